"""Savings accounting: what the router's answers cost, and an estimate of what always-LLM would have cost.

Every :class:`~langchain_slm_router.router.SLMRouter` holds a :class:`SavingsLedger` that adds up each finished
query (answered or failed) under a lock, so threads and asyncio tasks can route at once. The ledger keeps only raw
totals; :meth:`SavingsLedger.snapshot` turns them into a typed, JSON-ready :class:`RouterStats` with a
:class:`PriceTable` applied at read time (so changing prices re-prices the history).

What is counted, per finished query:

* the stage that answered (``math``, ``slm``, ``llm``, ``cache`` ...) and whether the fallback was called;
* tokens per model (input and output, from the trace's ``usage``), time per stage (the trace's ``latency_ms``);
* escalations by reason (:func:`escalation_reason`), fallback errors, and failed queries by error type.

**The cost and time saved are estimates.** The router never sees what the fallback would have answered to a
query it did not send there, so each avoided call is priced as an *average* fallback call:

* ``llm_calls_avoided`` = answered queries that did not call the fallback;
* estimated input/output tokens of one avoided call = the fallback's mean measured input/output tokens per call;
* estimated cost of one avoided call = those tokens / 1000 x the baseline model's price per 1k input/output tokens;
* estimated time of one avoided call = the mean output tokens x the fallback's measured latency per output token
  (its total measured time over its total output tokens);
* ``cost_always_llm`` = the fallback's actual cost + ``llm_calls_avoided`` x the estimated cost of one call;
  ``cost_saved`` = ``cost_always_llm`` - ``cost_actual`` (``cost_actual`` prices every model's tokens, local
  models at 0 unless you price them);
* ``time_always_llm_ms`` = the fallback's measured time + ``llm_calls_avoided`` x the estimated time of one call;
  ``time_saved_ms`` = ``time_always_llm_ms`` - the total time of all answered queries (so the SLM drafts that were
  escalated count against the saving).

Until the fallback has answered at least once (with token usage) there is nothing to average and the estimates
are ``None``; ``estimate_basis`` says so. The baseline model is the fallback model that answered most often unless
``baseline_model`` is given.
"""

from __future__ import annotations

import copy
import math
import threading
from collections import Counter
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, RootModel, ValidationError, field_validator

from langchain_slm_router.errors import InvalidPriceError
from langchain_slm_router.trace import RouteResult

#: How the estimate is computed, in one sentence (also in every :class:`RouterStats`).
ESTIMATE_METHOD = (
    "Estimate: each LLM call the router avoided is priced as the fallback's mean measured call (mean input and "
    "output tokens per call x the baseline model's price per 1k tokens; mean output tokens x its measured "
    "latency per output token); the saving is that always-LLM total minus what the router actually spent."
)


CACHE_STAGE = "cache"
"""The stage name of an answer served from the answer cache: an avoided LLM call, and no model's tokens."""


def escalation_reason(result: RouteResult) -> str | None:
    """Why the local stages did not answer (``None`` when they did): ``"gate"`` (the gate rejected the SLM's
    answer), ``"early_exit"`` (rejected mid-answer), ``"slm_skipped"`` (the SLM did not answer: non-text
    conversation, tools, over its input bound, or no SLM). A cache hit is never an escalation."""
    if result.stage == CACHE_STAGE:
        return None
    if result.stage != "llm" and not result.fallback_tried and not result.low_confidence:
        return None
    if result.slm_answer is None:
        return "slm_skipped"
    return "early_exit" if result.early_exit else "gate"


class ModelPrice(BaseModel):
    """The price of one model, per 1,000 tokens, in the currency of your choice (the same for every model)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    input_per_1k: float = 0.0
    """Price of 1,000 prompt tokens (>= 0)."""
    output_per_1k: float = 0.0
    """Price of 1,000 generated tokens (>= 0)."""

    @field_validator("input_per_1k", "output_per_1k", mode="before")
    @classmethod
    def _number(cls, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"a price must be a number, got {value!r}")
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"a price must be a finite number >= 0, got {value!r}")
        return float(value)

    def cost(self, input_tokens: float, output_tokens: float) -> float:
        """What these tokens cost."""
        return input_tokens / 1000.0 * self.input_per_1k + output_tokens / 1000.0 * self.output_per_1k


class PriceTable(RootModel[dict[str, ModelPrice]]):
    """Prices per model name (the names in the trace: ``fallback_model``, ``slm_model``); an unlisted model
    costs 0 (local models by default).

    Build it from a plain mapping: ``PriceTable.of({"ChatOllama(mistral)": {"input_per_1k": 0.002,
    "output_per_1k": 0.006}})``. A negative, infinite or non-numeric price is an :class:`InvalidPriceError`.
    """

    root: dict[str, ModelPrice] = Field(default_factory=dict)

    @classmethod
    def of(cls, prices: PriceTable | Mapping[str, Any] | None) -> PriceTable:
        """A price table from a mapping ``{model: {"input_per_1k": x, "output_per_1k": y}}`` (or a table)."""
        if isinstance(prices, PriceTable):
            return prices
        if prices is not None and not isinstance(prices, Mapping):
            raise InvalidPriceError(f"a price table is a mapping of model name to prices, got {type(prices).__name__}")
        try:
            return cls.model_validate(dict(prices or {}))
        except ValidationError as exc:
            details = "; ".join(f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}"
                                for e in exc.errors())
            raise InvalidPriceError(f"invalid price table: {details}") from None

    def price(self, model: str) -> ModelPrice:
        """The price of ``model`` (0 when unlisted)."""
        return self.root.get(model) or ModelPrice()


class TokenTotals(BaseModel):
    """Tokens one model read and wrote."""

    input_tokens: int = 0
    """Prompt tokens, all queries together."""
    output_tokens: int = 0
    """Generated tokens, all queries together."""
    calls: int = 0
    """Queries in which the model produced an answer (a draft counts)."""


class SavingsEstimate(BaseModel):
    """The estimate of cost and time saved against sending every query to the fallback (see the module doc)."""

    baseline_model: str | None = None
    """The fallback model the always-LLM baseline is priced and timed with."""
    estimate_basis: str = ""
    """On what the estimate rests (sample of fallback calls), or why there is none yet."""
    method: str = ESTIMATE_METHOD
    """How the estimate is computed."""
    llm_mean_input_tokens: float | None = None
    """The fallback's mean prompt tokens per call (measured)."""
    llm_mean_output_tokens: float | None = None
    """The fallback's mean generated tokens per call (measured)."""
    llm_ms_per_output_token: float | None = None
    """The fallback's measured time per generated token (its total time / its total output tokens)."""
    cost_actual: float = 0.0
    """What the router's answers cost: every model's tokens at its price (local models 0 unless priced)."""
    cost_always_llm: float | None = None
    """Estimated cost had every answered query gone to the baseline model."""
    cost_saved: float | None = None
    """``cost_always_llm - cost_actual`` (an estimate)."""
    time_always_llm_ms: float | None = None
    """Estimated time had every answered query gone to the baseline model."""
    time_actual_ms: float = 0.0
    """Total time of the answered queries (the traces' ``latency_ms["total"]`` added up)."""
    time_saved_ms: float | None = None
    """``time_always_llm_ms - time_actual_ms`` (an estimate; negative when escalated drafts cost more than the
    avoided calls saved)."""


class RouterStats(BaseModel):
    """The router's running totals and the savings estimate: ``router.stats()``; JSON with ``model_dump_json()``."""

    queries: int = 0
    """Queries finished: answered plus failed."""
    answered: int = 0
    """Queries that got an answer."""
    failed: dict[str, int] = Field(default_factory=dict)
    """Failed queries by error type (no answer; their tokens and time are not in the totals)."""
    by_stage: dict[str, int] = Field(default_factory=dict)
    """Answers by the stage that gave them (``math``, ``slm``, ``llm``, ``cache`` ...)."""
    llm_calls: int = 0
    """Queries that called the fallback (answered or not)."""
    llm_calls_avoided: int = 0
    """Answered queries that did not call the fallback."""
    escalations: dict[str, int] = Field(default_factory=dict)
    """Queries the local stages did not answer, by reason (``gate``, ``early_exit``, ``slm_skipped``)."""
    fallback_errors: int = 0
    """Answers returned from the SLM because the fallback failed (``on_fallback_error="return_slm"``)."""
    low_confidence: int = 0
    """Answers returned although the gate did not accept them."""
    tokens: dict[str, TokenTotals] = Field(default_factory=dict)
    """Tokens per model name."""
    time_ms: dict[str, float] = Field(default_factory=dict)
    """Time per stage (``math``, ``slm_load``, ``slm``, ``llm``, ``total`` ...), answered queries added up, ms."""
    savings: SavingsEstimate = Field(default_factory=SavingsEstimate)
    """Cost and time saved against always-LLM: an estimate (see ``savings.method``)."""


    def summary(self) -> str:
        """The totals as plain-text tables (what ``slm-router stats`` prints)."""
        lines = [f"queries: {self.queries} ({self.answered} answered, {sum(self.failed.values())} failed)"]
        lines.append(f"{'stage':<10}{'answers':>9}{'share':>8}{'time s':>10}")
        for stage, n in sorted(self.by_stage.items(), key=lambda kv: -kv[1]):
            share = n / self.answered if self.answered else 0.0
            lines.append(f"{stage:<10}{n:>9}{share:>8.1%}{self.time_ms.get(stage, 0.0) / 1000:>10.3f}")
        lines.append(f"LLM calls: {self.llm_calls} made, {self.llm_calls_avoided} avoided")
        for title, counts in (("escalations", self.escalations), ("failed", self.failed)):
            if counts:
                lines.append(f"{title}: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
        if self.tokens:
            lines.append(f"{'model':<40}{'input tok':>11}{'output tok':>11}{'calls':>7}")
            for model, t in self.tokens.items():
                lines.append(f"{model[:39]:<40}{t.input_tokens:>11}{t.output_tokens:>11}{t.calls:>7}")
        e = self.savings
        lines.append(f"cost actual: {e.cost_actual:.4f}")
        if e.cost_saved is not None and e.cost_always_llm is not None and e.time_saved_ms is not None:
            lines.append(f"ESTIMATED always-LLM cost: {e.cost_always_llm:.4f}; saved: {e.cost_saved:.4f}; "
                         f"time saved: {e.time_saved_ms / 1000:.2f} s")
        lines.append(f"estimate basis: {e.estimate_basis}")
        lines.append(e.method)
        return "\n".join(lines)


class SavingsLedger:
    """Running totals of one router (and the configured copies made from it), safe across threads and tasks.

    Args:
        baseline_model: the fallback model the always-LLM estimate uses (default: the one that answered most).
    """

    def __init__(self, baseline_model: str | None = None) -> None:
        self.baseline_model = baseline_model
        self._lock = threading.Lock()
        self.reset()

    def __deepcopy__(self, memo: dict[int, Any]) -> SavingsLedger:
        """A deep copy (e.g. ``router.model_copy(deep=True)``) starts separate totals from the current ones."""
        twin = SavingsLedger(self.baseline_model)
        with self._lock:
            state = {k: v for k, v in self.__dict__.items() if k != "_lock"}
        twin.__dict__.update(copy.deepcopy(state, memo))
        return twin

    def reset(self) -> None:
        """Start the totals again from zero."""
        with self._lock:
            self._stages: Counter[str] = Counter()
            self._failed: Counter[str] = Counter()
            self._escalations: Counter[str] = Counter()
            self._time: Counter[str] = Counter()
            self._tokens: dict[str, list[int]] = {}  # model -> [input, output, calls]
            self._llm: dict[str, list[float]] = {}  # fallback model -> [calls, input, output, ms] (answered)
            self._llm_calls = 0
            self._avoided = 0
            self._fallback_errors = 0
            self._low_confidence = 0

    # ------------------------------------------------------------------ recording
    def record(self, result: RouteResult) -> None:
        """Add one answered query."""
        usage = result.usage
        with self._lock:
            self._stages[result.stage] += 1
            for stage, ms in result.latency_ms.items():
                self._time[stage] += ms
            if result.stage == CACHE_STAGE:  # no model ran for this answer (its cached trace may say otherwise)
                self._avoided += 1
                return
            reason = escalation_reason(result)
            if reason is not None:
                self._escalations[reason] += 1
            if result.fallback_tried:
                self._llm_calls += 1
            else:
                self._avoided += 1
            self._fallback_errors += result.fallback_error is not None
            self._low_confidence += result.low_confidence
            if result.slm_model is not None:
                self._add_tokens(result.slm_model, usage.get("slm_input_tokens", 0), usage.get("slm_output_tokens", 0))
            if result.stage == "llm" and result.fallback_model is not None:
                inp, out = usage.get("llm_input_tokens", 0), usage.get("llm_output_tokens", 0)
                self._add_tokens(result.fallback_model, inp, out)
                llm = self._llm.setdefault(result.fallback_model, [0, 0, 0, 0.0])
                llm[0] += 1
                llm[1] += inp
                llm[2] += out
                llm[3] += result.latency_ms.get("llm", 0.0)

    def record_failure(self, error: BaseException, *, fallback_tried: bool = False) -> None:
        """Add one failed query (its error type; whether it called the fallback)."""
        with self._lock:
            self._failed[type(error).__name__] += 1
            self._llm_calls += fallback_tried

    def _add_tokens(self, model: str, inp: int, out: int) -> None:
        totals = self._tokens.setdefault(model, [0, 0, 0])
        totals[0] += int(inp)
        totals[1] += int(out)
        totals[2] += 1

    # ------------------------------------------------------------------ reading
    def snapshot(self, prices: PriceTable | Mapping[str, Any] | None = None) -> RouterStats:
        """The totals now, with the savings estimate priced by ``prices``."""
        table = PriceTable.of(prices)
        with self._lock:
            stages, failed = dict(self._stages), dict(self._failed)
            escalations, time_ms = dict(self._escalations), dict(self._time)
            tokens = {m: TokenTotals(input_tokens=t[0], output_tokens=t[1], calls=t[2])
                      for m, t in self._tokens.items()}
            llm = {m: list(v) for m, v in self._llm.items()}
            llm_calls, fallback_errors, low_conf = self._llm_calls, self._fallback_errors, self._low_confidence
            avoided = self._avoided
        answered = sum(stages.values())
        stats = RouterStats(
            queries=answered + sum(failed.values()), answered=answered, failed=failed, by_stage=stages,
            llm_calls=llm_calls, llm_calls_avoided=avoided, escalations=escalations, fallback_errors=fallback_errors,
            low_confidence=low_conf, tokens=tokens, time_ms={k: round(v, 3) for k, v in time_ms.items()},
        )
        stats.savings = self._estimate(stats, llm, table)
        return stats

    def _estimate(self, stats: RouterStats, llm: dict[str, list[float]], table: PriceTable) -> SavingsEstimate:
        actual = sum(table.price(m).cost(t.input_tokens, t.output_tokens) for m, t in stats.tokens.items())
        est = SavingsEstimate(cost_actual=actual, time_actual_ms=round(stats.time_ms.get("total", 0.0), 3))
        baseline = self.baseline_model or (max(llm, key=lambda m: llm[m][0]) if llm else None)
        est.baseline_model = baseline
        calls, inp, out, ms = llm.get(baseline, [0, 0, 0, 0.0]) if baseline is not None else [0, 0, 0, 0.0]
        if not calls or not out:
            est.estimate_basis = ("no estimate yet: the fallback has not answered with token usage"
                                  if baseline is None or not calls else
                                  f"no estimate: {baseline} reported no output tokens in {int(calls)} calls")
            return est
        mean_in, mean_out, ms_per_token = inp / calls, out / calls, ms / out
        price = table.price(baseline)
        avoided = stats.llm_calls_avoided
        llm_cost = sum(table.price(m).cost(int(v[1]), int(v[2])) for m, v in llm.items())
        llm_ms = sum(v[3] for v in llm.values())
        est.llm_mean_input_tokens = round(mean_in, 3)
        est.llm_mean_output_tokens = round(mean_out, 3)
        est.llm_ms_per_output_token = round(ms_per_token, 4)
        est.cost_always_llm = llm_cost + avoided * price.cost(mean_in, mean_out)
        est.cost_saved = est.cost_always_llm - actual
        est.time_always_llm_ms = round(llm_ms + avoided * mean_out * ms_per_token, 3)
        est.time_saved_ms = round(est.time_always_llm_ms - est.time_actual_ms, 3)
        priced = "" if baseline in table.root else f"; {baseline} has no price in the table (priced 0)"
        est.estimate_basis = (f"{int(calls)} measured {baseline} calls ({mean_in:.1f} input and {mean_out:.1f} "
                              f"output tokens per call, {ms_per_token:.2f} ms per output token){priced}")
        return est


__all__ = [
    "CACHE_STAGE",
    "ESTIMATE_METHOD",
    "ModelPrice",
    "PriceTable",
    "RouterStats",
    "SavingsEstimate",
    "SavingsLedger",
    "TokenTotals",
    "escalation_reason",
]
