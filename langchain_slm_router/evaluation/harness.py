"""Run every component once per question and keep the per-question records that all systems are derived from.

For each :class:`~langchain_slm_router.evaluation.datasets.EvalItem` the harness

1. runs the math engine on the prompt (timed; not cached, it takes milliseconds);
2. asks the SLM alone (:meth:`SLMBackend.generate`, one query at a time so its latency is the per-query latency a
   user sees), keeping its answer, confidence signals and latency;
3. asks the LLM alone through its LangChain chat model (``ChatOllama`` in the CLI), timing the call;
4. optionally routes the question for real with :class:`~langchain_slm_router.router.SLMRouter` at the seed
   threshold, with the same fallback, and keeps its stage and measured per-stage latency;

scores every answer (:mod:`~langchain_slm_router.evaluation.scoring`) and caches every model output on disk
(:mod:`~langchain_slm_router.evaluation.cache`). The systems of :mod:`~langchain_slm_router.evaluation.systems`
are then functions of these records, so sweeping thresholds or calibrating needs no model call.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from langchain_slm_router.errors import SLMRouterError
from langchain_slm_router.evaluation.cache import GenerationCache
from langchain_slm_router.evaluation.datasets import EvalItem
from langchain_slm_router.evaluation.scoring import Score, score_answer
from langchain_slm_router.gates import DEFAULT_THRESHOLD, GatePolicy
from langchain_slm_router.math_engine import MathEngine
from langchain_slm_router.slm import SLMBackend
from langchain_slm_router.trace import elapsed_ms

#: Answer length (tokens) per data set, for the SLM (``max_new_tokens``) and the LLM (``num_predict``) alike:
#: short answers for extractive / factoid sets, room for a few reasoning lines on GSM8K.
DEFAULT_MAX_NEW_TOKENS: dict[str, int] = {"squad_v2": 24, "nq_open": 24, "math": 32, "gsm8k": 128}

Record = dict[str, Any]



def _scored(item: EvalItem, text: str) -> dict[str, Any]:
    score: Score = score_answer(item.dataset, text, item.answers, item.unanswerable)
    return {"score": score.score, "correct": score.correct, "em": score.em, "f1": score.f1,
            "abstained": score.abstained, "extracted": score.extracted}


class HarnessConfig(BaseModel):
    """Settings of one evaluation run.

    Args:
        llm_id: a stable name of the LLM for the cache key (model and where it is served).
        max_new_tokens: answer length per data set (SLM ``max_new_tokens`` and LLM ``num_predict``).
        seed_threshold: the gate threshold of the live router run.
        live_router: also route each question for real with ``SLMRouter`` and record its measured latency.
        temperature: decoding temperature of both models (0 = greedy).
    """

    model_config = ConfigDict(frozen=True)

    llm_id: str
    max_new_tokens: dict[str, int] = Field(default_factory=lambda: dict(DEFAULT_MAX_NEW_TOKENS))
    seed_threshold: float = DEFAULT_THRESHOLD
    live_router: bool = True
    temperature: float = 0.0


class Harness:
    """Runs the components on evaluation items and returns scored per-question records.

    Args:
        slm: the local SLM (its ``max_new_tokens`` is set per data set).
        llm_factory: ``llm_factory(num_predict)`` returns the LangChain chat model used as the LLM (and as the
            live router's fallback), e.g. ``ChatOllama(model=..., base_url=..., num_predict=n, temperature=0)``.
        config: run settings.
        cache: the on-disk cache of model outputs.
        math_engine: the math stage (default ``MathEngine()``).
    """

    def __init__(self, slm: SLMBackend, llm_factory: Callable[[int], Any], config: HarnessConfig,
                 cache: GenerationCache | None = None, math_engine: MathEngine | None = None) -> None:
        self.slm = slm
        self.llm_factory = llm_factory
        self.config = config
        self.cache = cache or GenerationCache(enabled=False)
        self.math_engine = math_engine or MathEngine()
        self._llms: dict[int, Any] = {}

    # ------------------------------------------------------------------ components
    def _tokens(self, item: EvalItem) -> int:
        return int(self.config.max_new_tokens.get(item.dataset, 64))

    def _slm_for(self, item: EvalItem) -> SLMBackend:
        update: dict[str, Any] = {"max_new_tokens": self._tokens(item)}
        if "temperature" in type(self.slm).model_fields:
            update["temperature"] = self.config.temperature
        return self.slm.model_copy(update=update)

    def _llm_for(self, item: EvalItem) -> Any:
        n = self._tokens(item)
        if n not in self._llms:
            self._llms[n] = self.llm_factory(n)
        return self._llms[n]

    def _slm_settings(self, slm: SLMBackend) -> dict[str, Any]:
        """The SLM's settings in the cache key: a generation is reused only for the same engine and options."""
        plain = {k: v for k, v in slm.model_dump(mode="json").items()
                 if isinstance(v, (str, int, float, bool)) or v is None}
        return {"backend": slm.backend_name, **plain, "record_format": 2}

    def run_math(self, item: EvalItem) -> tuple[dict[str, Any] | None, float]:
        start = time.perf_counter()
        answer = self.math_engine.solve(item.prompt)
        elapsed = elapsed_ms(start)
        if answer is None:
            return None, elapsed
        return {"answer": answer.answer, "kind": answer.kind, "decimal": answer.decimal}, elapsed

    def run_slm(self, item: EvalItem) -> dict[str, Any]:
        slm = self._slm_for(item)

        def compute() -> dict[str, Any]:
            start = time.perf_counter()
            try:
                gen = slm.generate([{"role": "user", "content": item.prompt}])
            except SLMRouterError as exc:  # e.g. QueryTooLongError: the router would escalate
                return {"error": f"{type(exc).__name__}: {exc}", "text": "", "signals": None,
                        "latency_ms": elapsed_ms(start), "finished": False}
            return {"text": gen.text, "signals": gen.signals.model_dump(), "finished": gen.finished,
                    "input_tokens": gen.input_tokens, "output_tokens": gen.output_tokens,
                    "token_probs": [round(p, 6) for p in gen.token_probs],
                    "token_entropies": [round(h, 5) for h in gen.token_entropies],
                    # the hidden vectors a probe reads (LocalSLM captures them on the generating pass)
                    **({"hidden": {k: [round(float(v), 4) for v in vec] for k, vec in gen.hidden.items()}}
                       if gen.hidden else {}),
                    "latency_ms": elapsed_ms(start)}

        value, cached = self.cache.get_or_compute("slm", slm.model_name, item.prompt, self._slm_settings(slm),
                                                  compute)
        return {**value, "cached": cached}

    def run_llm(self, item: EvalItem) -> dict[str, Any]:
        settings = {"num_predict": self._tokens(item), "temperature": self.config.temperature}

        def compute() -> dict[str, Any]:
            from langchain_core.messages import HumanMessage

            llm = self._llm_for(item)
            start = time.perf_counter()
            message = llm.invoke([HumanMessage(content=item.prompt)])
            elapsed = elapsed_ms(start)
            usage = getattr(message, "usage_metadata", None) or {}
            text = message.text if hasattr(message, "text") else str(message)
            return {"text": text if isinstance(text, str) else str(text), "latency_ms": elapsed,
                    "input_tokens": int(usage.get("input_tokens", 0)),
                    "output_tokens": int(usage.get("output_tokens", 0))}

        value, cached = self.cache.get_or_compute("llm", self.config.llm_id, item.prompt, settings, compute)
        return {**value, "cached": cached}

    def run_live_router(self, item: EvalItem) -> dict[str, Any]:
        slm = self._slm_for(item)
        settings = {"slm": self._slm_settings(slm), "num_predict": self._tokens(item),
                    "threshold": self.config.seed_threshold, "slm_model": slm.model_name}

        def compute() -> dict[str, Any]:
            from langchain_slm_router.router import SLMRouter

            router = SLMRouter(math_engine=self.math_engine, slm=slm,
                               gate=GatePolicy(min_mean_prob=self.config.seed_threshold),
                               fallback=self._llm_for(item), fallback_retries=0)
            result = router.route(item.prompt)
            return {"answer": result.answer, "stage": result.stage, "latency_ms": result.latency_ms,
                    "reason": result.reason,
                    "signals": result.signals.model_dump() if result.signals else None}

        value, cached = self.cache.get_or_compute("router", self.config.llm_id, item.prompt, settings, compute)
        return {**value, "cached": cached}

    # ------------------------------------------------------------------ records
    def record(self, item: EvalItem, live: bool | None = None) -> Record:
        """Run every component on ``item`` and return its scored record."""
        math, math_ms = self.run_math(item)
        if math is not None:
            math.update(_scored(item, math["answer"]))
        slm = self.run_slm(item)
        slm.update(_scored(item, slm["text"]) if slm.get("signals") else
                   {"score": 0.0, "correct": False, "em": 0.0, "f1": 0.0})
        llm = self.run_llm(item)
        llm.update(_scored(item, llm["text"]))
        record: Record = {
            "id": item.id, "dataset": item.dataset, "kind": item.kind, "question": item.question,
            "answers": item.answers, "unanswerable": item.unanswerable, "prompt_chars": len(item.prompt),
            "prompt": item.prompt,
            "math": math, "math_latency_ms": math_ms, "slm": slm, "llm": llm, "live_router": None,
        }
        if self.config.live_router if live is None else live:
            routed = self.run_live_router(item)
            routed.update(_scored(item, routed["answer"]))
            record["live_router"] = routed
        return record

    def run(self, items: Sequence[EvalItem], *, live: bool | None = None, desc: str = "eval",
            progress: bool = True, on_record: Callable[[Record], None] | None = None) -> list[Record]:
        """Records for all ``items`` (with a tqdm progress bar)."""
        from tqdm.auto import tqdm

        out: list[Record] = []
        for item in tqdm(items, desc=desc, disable=not progress, unit="q", dynamic_ncols=True):
            rec = self.record(item, live)
            out.append(rec)
            if on_record is not None:
                on_record(rec)
        return out


__all__ = ["DEFAULT_MAX_NEW_TOKENS", "Harness", "HarnessConfig", "Record"]
