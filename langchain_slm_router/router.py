"""The routing pipeline: math engine, then the local SLM behind its confidence gate, then the fallback.

:class:`SLMRouter` is the core that the LangChain chat model and the LlamaIndex LLM both wrap. It answers a
string or a list of chat messages and returns a :class:`~langchain_slm_router.trace.RouteResult`: the answer and
its trace (stage, signals, threshold, per-stage latency, whether the fallback was tried).

Order of work for one query:

1. The query is checked (:mod:`langchain_slm_router.messages`): empty, undecodable or over-long input raises a
   typed :class:`~langchain_slm_router.errors.InvalidQueryError` before any model runs.
2. The math engine tries the last user message; if it solves it, that exact answer is returned.
3. The SLM answers; the gate keeps the answer when its confidence signals pass.
4. Otherwise the fallback chat model answers. When it fails, ``on_fallback_error="raise"`` (default) raises a
   typed :class:`~langchain_slm_router.errors.FallbackError`; ``"return_slm"`` returns the SLM's answer with
   ``low_confidence=True`` and the error in the trace.

Conversations the local stages cannot read (images or other non-text content, tool traffic) and requests that
need tools or structured output go straight to the fallback. A prompt longer than the SLM's
``max_input_tokens`` follows the SLM's ``overflow`` setting: escalated (``"escalate"``, default), cut in the middle
(``"truncate"``), or rejected with :class:`~langchain_slm_router.errors.QueryTooLongError` (``"error"``).

Batches (:meth:`SLMRouter.route_batch`) run the SLM on all their SLM-bound queries in padded batches and call the
fallback once with :meth:`~langchain_core.runnables.Runnable.batch` for the escalated ones; a failing query fails
alone when ``return_exceptions=True``.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import Any, Literal

from langchain_core.messages import BaseMessage
from langchain_core.runnables import RunnableConfig, RunnableLambda
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SerializeAsAny,
    SerializerFunctionWrapHandler,
    ValidationInfo,
    field_serializer,
    field_validator,
    model_validator,
)

from langchain_slm_router.cache.semantic import CacheProbe, SemanticCache, config_digest
from langchain_slm_router.errors import FallbackUnavailableError, QueryTooLongError, SLMRouterError
from langchain_slm_router.fallback import (
    StreamRetry,
    default_fallback,
    fallback_name,
    translate_error,
    with_fallback_retry,
)
from langchain_slm_router.gates import Gate, GateDecision, GatePolicy, make_gate
from langchain_slm_router.gates.defaults import (
    SHIPPED_REFERENCE,
    default_gate,
    fitted_for,
    fitted_gate_for,
    gate_reference,
    is_shipped,
    resolve_gate_reference,
)
from langchain_slm_router.math_engine import MathEngine
from langchain_slm_router.messages import Conversation, to_messages
from langchain_slm_router.savings import PriceTable, RouterStats, SavingsLedger
from langchain_slm_router.slm import LocalSLM, Overflow, SLMBackend, SLMGeneration, make_backend
from langchain_slm_router.telemetry import QuerySpan, current, tracer_for
from langchain_slm_router.trace import RouteResult, elapsed_ms
from langchain_slm_router.traffic import TrafficLog


#: The options :meth:`SLMRouter.with_options` takes besides the router's own fields.
ROUTER_OPTIONS = ("threshold", "max_tokens", "temperature", "overflow")



class StreamPart(BaseModel):
    """One piece of a streamed answer: a text delta, the fallback's own chunk, and (last) the result."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    text: str = ""
    chunk: Any = None
    """The fallback's ``AIMessageChunk`` when the fallback is streaming (tool-call chunks included)."""
    result: RouteResult | None = None
    """Set on the last part only: the complete answer and its trace."""


class _Job:
    """The state of one query as it moves through the stages."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.conv: Conversation | None = None
        self.error: BaseException | None = None
        self.result: RouteResult | None = None
        self.latency: dict[str, float] = {}
        self.gen: SLMGeneration | None = None
        self.decision: GateDecision | None = None
        self.pre: GateDecision | None = None  # the pre-generation gate's decision, when it let the query through
        self.skip_slm = False
        """True when the query goes straight to the fallback (``reason`` says why)."""
        self.reason = ""
        self.llm_text: str | None = None
        """The fallback's answer, once it answered (what the traffic log records)."""
        self.otel: QuerySpan | None = None
        """The query's OpenTelemetry span (``None`` when no tracer provider is set)."""
        self.counted = False
        """True once the query is in the router's totals (:meth:`SLMRouter.stats`)."""
        self.cache_probe: CacheProbe | None = None
        """The cache lookup of this query (its answer is stored when it was a miss)."""

    @property
    def open(self) -> bool:
        return self.error is None and self.result is None


def _built_slm(data: dict[str, Any]) -> Any:
    """The SLM a router's construction arguments name (a dumped configuration built; default ``LocalSLM()``)."""
    slm = data["slm"] if "slm" in data else LocalSLM()
    if isinstance(slm, dict):
        options = dict(slm)
        slm = make_backend(options.pop("backend", LocalSLM.backend_name), **options)
    return slm


class SLMRouter(BaseModel):
    """Answer each query with the cheapest component that can answer it well.

    Args:
        math_engine: the sympy stage; ``None`` disables it.
        slm: the small model, any :class:`~langchain_slm_router.slm.SLMBackend` (default: the in-process
            :class:`~langchain_slm_router.slm.LocalSLM`); ``None`` disables it (every non-math query goes to the
            fallback). Its ``overflow`` setting decides what a prompt over its ``max_input_tokens`` gets.
        gate: the :class:`~langchain_slm_router.gates.Gate` deciding whether the SLM's answer is kept; default the
            shipped learned gate fitted for the SLM's weights (:mod:`~langchain_slm_router.gates.defaults`), else
            the seed's rule ``GatePolicy()``; ``"threshold"`` (or ``"learned"`` with its options) by name;
            ``"fitted"``: the opt-in learned gate fitted for the SLM's weights (``gates/fitted/``, issue 18).
        fallback: any LangChain chat model (or Runnable taking messages); default ``ChatOllama(model="mistral")``
            at ``OLLAMA_HOST``. ``None`` means no fallback: the SLM's answer is returned, marked low-confidence
            when the gate rejected it.
        on_fallback_error: ``"raise"`` a typed error, or ``"return_slm"``: return the SLM's answer marked
            ``low_confidence`` with the error in the trace.
        fallback_retries: retries (with exponential back-off) after a transient fallback failure.
        max_query_chars: longest accepted query (all messages together), in characters.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    math_engine: MathEngine | None = Field(default_factory=MathEngine)
    slm: SerializeAsAny[SLMBackend] | None = Field(default_factory=LocalSLM)
    gate: SerializeAsAny[Gate] = Field(default_factory=GatePolicy)
    """Set from the SLM when not given (see ``Args``)."""
    fallback: Any | None = Field(default_factory=default_fallback)
    on_fallback_error: Literal["raise", "return_slm"] = "raise"
    traffic_log: Path | None = None
    """Opt-in: append each escalated query's SLM draft and LLM answer to this JSONL file, to train a gate on
    your own traffic with ``slm-router train-gate --traffic FILE`` (see :mod:`langchain_slm_router.gates.training`)."""
    fallback_retries: int = Field(default=2, ge=0, le=10)
    max_query_chars: int = Field(default=32_000, ge=1)
    prices: PriceTable = Field(default_factory=PriceTable)
    """Price per 1k input/output tokens per model name, for the savings estimate of :meth:`stats` (unlisted
    models, e.g. local ones, cost 0); see :mod:`langchain_slm_router.savings`."""
    savings: SavingsLedger = Field(default_factory=SavingsLedger, exclude=True, repr=False)
    """The running totals behind :meth:`stats`; shared by the copies :meth:`with_options` makes (pass a new
    :class:`~langchain_slm_router.savings.SavingsLedger` for separate totals)."""
    tracer_provider: Any | None = Field(default=None, exclude=True, repr=False)
    """The OpenTelemetry tracer provider of the router's spans (default: the global one); with none set, no span
    work is done (see :mod:`langchain_slm_router.telemetry`)."""
    answer_cache: SemanticCache | None = Field(default_factory=SemanticCache)
    """The answer cache, consulted after the math engine and before the SLM (see docs/cache.md). Default: exact
    match of the normalised question in the same context and configuration, in process memory;
    ``SemanticCache(semantic=True)`` also serves paraphrases; ``None`` disables it."""

    _traffic: TrafficLog | None = PrivateAttr(default=None)
    _cache_config: str | None = PrivateAttr(default=None)

    @model_validator(mode="before")
    @classmethod
    def _default_gate(cls, data: Any) -> Any:
        """No gate named (or ``"auto"``): the shipped gate for this SLM's weights, else the seed's rule."""
        if isinstance(data, dict) and data.get("gate", "auto") == "auto":
            slm = _built_slm(data)
            data = {**data, "slm": slm, "gate": default_gate(slm if isinstance(slm, SLMBackend) else None)}
        return data

    def __init__(self, **data: Any) -> None:
        if "prices" in data:  # a bad price table is an InvalidPriceError, not pydantic's wrapped ValidationError
            data["prices"] = PriceTable.of(data["prices"])
        if data.get("gate") == "fitted":  # here, not in _default_gate: a ConfigError, not pydantic's ValidationError
            slm = _built_slm(data)
            data = {**data, "slm": slm, "gate": fitted_gate_for(slm if isinstance(slm, SLMBackend) else None)}
        super().__init__(**data)
        self.gate.check_slm(self.slm)  # here, not in a validator: its typed error must reach the caller as is

    def model_post_init(self, context: Any) -> None:
        if self.traffic_log is not None:
            self._traffic = TrafficLog(self.traffic_log)

    @field_validator("prices", mode="before")
    @classmethod
    def _price_table(cls, value: Any) -> PriceTable:
        return PriceTable.of(value)

    @field_validator("slm", "gate", mode="before")
    @classmethod
    def _from_registry(cls, value: Any, info: ValidationInfo) -> Any:
        """A plain dict (e.g. a dumped configuration) builds the registered class its ``backend`` / ``gate`` key
        names (default: the local SLM; the threshold gate)."""
        if isinstance(value, str) and info.field_name == "gate":
            return make_gate(value)
        if not isinstance(value, dict):
            return value
        options = dict(value)
        if info.field_name == "slm":
            return make_backend(options.pop("backend", LocalSLM.backend_name), **options)
        if options.get("gate") == SHIPPED_REFERENCE:
            return resolve_gate_reference(options)
        return make_gate(options.pop("gate", GatePolicy.gate_name), **options)

    @field_serializer("gate", mode="wrap")
    def _gate_by_reference(self, gate: Gate, handler: SerializerFunctionWrapHandler) -> Any:
        """A shipped gate file is dumped as a reference (its name, hash and thresholds), not ~1 MB of numbers."""
        return gate_reference(gate) or handler(gate)

    # ------------------------------------------------------------------ configuration
    @property
    def display_name(self) -> str:
        """The pipeline's name, as both integrations report it: ``"slm-router:<SLM>+<fallback>"``."""
        slm = self.slm.model_name if self.slm is not None else "no-slm"
        fallback = fallback_name(self.fallback) if self.fallback is not None else "no-fallback"
        return f"slm-router:{slm}+{fallback}"

    def with_options(
        self, *, threshold: float | None = None, max_tokens: int | None = None, temperature: float | None = None,
        overflow: Overflow | None = None, **fields: Any,
    ) -> SLMRouter:
        """A copy with changed options: the one way the integrations derive a configured router.

        Args:
            threshold: the gate's headline threshold (``Gate.with_threshold``).
            max_tokens: the SLM's ``max_new_tokens``.
            temperature: the SLM's sampling temperature, for backends that have one.
            overflow: the SLM's ``overflow`` rule.
            fields: any :class:`SLMRouter` field (``gate``, ``fallback``, ``slm``, ...).
        """
        unknown = set(fields) - set(type(self).model_fields)
        if unknown:
            raise TypeError(f"unknown SLMRouter option(s): {sorted(unknown)}")
        core = {**{k: getattr(self, k) for k in type(self).model_fields}, **fields}
        if "slm" in fields and "gate" not in fields and is_shipped(self.gate) and not fitted_for(self.gate,
                                                                                                fields["slm"]):
            core.pop("gate")  # the gate was chosen for the old SLM's weights: choose again for the new one
        if threshold is not None and "gate" not in core:
            core["gate"] = default_gate(core["slm"])
        if threshold is not None:
            core["gate"] = core["gate"].with_threshold(threshold)
        slm = core["slm"]
        slm_updates: dict[str, Any] = {}
        if max_tokens is not None:
            slm_updates["max_new_tokens"] = max_tokens
        if temperature is not None:
            if slm is not None and "temperature" not in type(slm).model_fields:
                raise TypeError(f"the SLM backend {type(slm).__name__} has no temperature setting")
            slm_updates["temperature"] = temperature
        if overflow is not None:
            slm_updates["overflow"] = overflow
        if slm_updates and slm is not None:
            core["slm"] = type(slm).model_validate({**{k: getattr(slm, k) for k in type(slm).model_fields},
                                                    **slm_updates})
        return type(self)(**core)

    @classmethod
    def from_options(cls, router: SLMRouter | dict[str, Any] | None = None, **options: Any) -> SLMRouter:
        """``router.with_options(**options)``, or a router built from ``options`` when ``router`` is ``None``.

        This is how both integrations turn their construction arguments (``router=``, ``threshold``,
        ``max_tokens``, ``temperature``, ``overflow``, any :class:`SLMRouter` field, and ``max_retries`` as an alias
        of ``fallback_retries``) into the router they wrap.
        ``threshold``, ``max_tokens``, ``temperature`` and ``overflow`` set to ``None`` are left alone; a field set
        to ``None`` is ``None`` (``fallback=None``: no fallback).
        """
        options = {k: v for k, v in options.items() if v is not None or k not in (*ROUTER_OPTIONS, "max_retries")}
        if "max_retries" in options:  # LangChain's and LlamaIndex's usual name for it
            options.setdefault("fallback_retries", options.pop("max_retries"))
        if router is None:
            fields = {k: options.pop(k) for k in list(options) if k in cls.model_fields}
            router = cls(**fields)
        elif not isinstance(router, SLMRouter):
            router = cls.model_validate(router)
        return router.with_options(**options) if options else router

    # ------------------------------------------------------------------ public API
    def stats(self) -> RouterStats:
        """The running totals (queries per stage, LLM calls avoided, tokens per model, time per stage,
        escalations) and the *estimated* cost and time saved against always-LLM, priced with :attr:`prices`."""
        return self.savings.snapshot(self.prices)

    def route(
        self, query: Any, config: RunnableConfig | None = None, *, escalate: str | None = None,
        fallback: Any | None = None,
    ) -> RouteResult:
        """Answer one query (text or chat messages).

        Args:
            query: a string, a message, or a list of messages.
            config: a LangChain ``RunnableConfig``; its callbacks see each stage as a child run.
            escalate: skip the local stages and ask the fallback, giving this reason (e.g. ``"tools"``).
            fallback: a fallback to use for this call instead of ``self.fallback`` (e.g. one with bound tools).
        """
        return self._unwrap(self.route_batch([query], config, escalate=escalate, fallback=fallback,
                                             return_exceptions=True)[0])

    async def aroute(
        self, query: Any, config: RunnableConfig | None = None, *, escalate: str | None = None,
        fallback: Any | None = None,
    ) -> RouteResult:
        """Async :meth:`route`: the SLM runs in a worker thread, the fallback through ``ainvoke``."""
        results = await self.aroute_batch([query], config, escalate=escalate, fallback=fallback,
                                          return_exceptions=True)
        return self._unwrap(results[0])

    def route_batch(
        self, queries: Sequence[Any], config: RunnableConfig | None = None, *, return_exceptions: bool = False,
        escalate: str | None = None, fallback: Any | None = None,
    ) -> list[Any]:
        """Answer several queries; the SLM runs them in padded batches, the fallback in one ``batch`` call.

        With ``return_exceptions=True`` a failed query's slot holds its exception and the others are answered;
        otherwise the first error is raised after all queries have run.
        """
        jobs = self._prepare(queries, escalate, config)
        self._run_cache(jobs, config, fallback)
        self._run_slm(jobs, config)
        self._run_fallback(jobs, config, fallback)
        return self._collect(jobs, return_exceptions)

    async def aroute_batch(
        self, queries: Sequence[Any], config: RunnableConfig | None = None, *, return_exceptions: bool = False,
        escalate: str | None = None, fallback: Any | None = None,
    ) -> list[Any]:
        """Async :meth:`route_batch`."""
        jobs = await self._aprepare(queries, escalate, config)
        await asyncio.to_thread(self._run_cache, jobs, config, fallback)
        await self._arun_slm(jobs, config)
        await self._arun_fallback(jobs, config, fallback)
        return self._collect(jobs, return_exceptions)

    def stream(
        self, query: Any, config: RunnableConfig | None = None, *, escalate: str | None = None,
        fallback: Any | None = None,
    ) -> Iterator[StreamPart]:
        """Stream one answer.

        Math answers and kept SLM answers are complete before the first part is sent (the gate needs the whole
        SLM answer to decide), then sent as word pieces. An escalated answer streams the fallback's own chunks
        as they arrive. The last part carries the :class:`RouteResult`.
        """
        job = self._prepare([query], escalate, config)[0]
        self._run_cache([job], config, fallback)
        self._run_slm([job], config)
        if job.open:
            yield from self._stream_fallback(job, config, fallback)
            return
        yield from self._stream_done(job)

    async def astream(
        self, query: Any, config: RunnableConfig | None = None, *, escalate: str | None = None,
        fallback: Any | None = None,
    ) -> AsyncIterator[StreamPart]:
        """Async :meth:`stream`."""
        job = (await self._aprepare([query], escalate, config))[0]
        await asyncio.to_thread(self._run_cache, [job], config, fallback)
        await self._arun_slm([job], config)
        if job.open:
            async for part in self._astream_fallback(job, config, fallback):
                yield part
            return
        for part in self._stream_done(job):
            yield part

    # ------------------------------------------------------------------ stages
    def _prepare(self, queries: Sequence[Any], escalate: str | None, config: RunnableConfig | None) -> list[_Job]:
        jobs = self._check(queries, escalate)
        for job in self._math_todo(jobs):
            self._run_math(job, config)
        return jobs

    async def _aprepare(
        self, queries: Sequence[Any], escalate: str | None, config: RunnableConfig | None
    ) -> list[_Job]:
        """Async :meth:`_prepare`: the math engine runs on its caller threads, never on the event loop."""
        jobs = self._check(queries, escalate)
        await asyncio.gather(*(self._arun_math(job, config) for job in self._math_todo(jobs)))
        return jobs

    def _check(self, queries: Sequence[Any], escalate: str | None) -> list[_Job]:
        """A job per query: its conversation checked, and whether it skips the local stages."""
        jobs = []
        tracer = tracer_for(self.tracer_provider)
        for query in queries:
            job = _Job()
            jobs.append(job)
            if tracer is not None:
                job.otel = QuerySpan(tracer, self.display_name)
            try:
                job.conv = Conversation(to_messages(query), max_chars=self.max_query_chars)
            except SLMRouterError as exc:
                job.error = exc
                continue
            if escalate:
                job.skip_slm, job.reason = True, f"sent to the fallback: {escalate}"
            elif not job.conv.local_ok:
                job.skip_slm, job.reason = True, "sent to the fallback: the local stages cannot read this conversation"
        return jobs

    def _math_todo(self, jobs: list[_Job]) -> list[_Job]:
        if self.math_engine is None:
            return []
        return [j for j in jobs if j.open and j.conv is not None and not j.skip_slm]

    def _run_math(self, job: _Job, config: RunnableConfig | None) -> None:
        start = time.perf_counter()
        if job.otel is not None:
            job.otel.start("math")
        answer = self._stage("math_engine", self.math_engine.solve, job.conv.question, config)  # type: ignore
        self._finish_math(job, answer, elapsed_ms(start))

    async def _arun_math(self, job: _Job, config: RunnableConfig | None) -> None:
        start = time.perf_counter()
        engine = self.math_engine
        if job.otel is not None:
            job.otel.start("math")
        answer = await self._astage("math_engine", engine.solve, engine.asolve,  # type: ignore[union-attr]
                                    job.conv.question, config)  # type: ignore[union-attr]
        self._finish_math(job, answer, elapsed_ms(start))

    def _finish_math(self, job: _Job, answer: Any, took_ms: float) -> None:
        job.latency["math"] = took_ms
        if job.otel is not None:
            job.otel.end_math(answer)
        if answer is not None:
            job.result = self._result(job, answer=answer.answer, stage="math", math_kind=answer.kind,
                                      reason=f"math engine solved it ({answer.kind})")

    def _run_cache(self, jobs: list[_Job], config: RunnableConfig | None, override: Any | None) -> None:
        """The cache stage (after math, before the SLM): serve cached answers; the others are stored by
        :meth:`_result`. Conversations the local stages skip and calls with their own fallback are not cached;
        ``config["metadata"]["cache_tags"]`` tags the stored answers (``cache.invalidate(tag=...)``)."""
        if self.answer_cache is None or override is not None:
            return
        todo = [j for j in jobs if j.open and j.conv is not None and j.conv.local_ok and not j.skip_slm]
        if not todo:
            return
        if self._cache_config is None:
            self._cache_config = config_digest(self.display_name, self.math_engine, self.slm, self.gate.identity(),
                                               self.fallback, self.on_fallback_error)
        tags = ((config or {}).get("metadata") or {}).get("cache_tags") or ()
        probes = self.answer_cache.lookup([j.conv.dicts for j in todo],  # type: ignore[union-attr]
                                          self._cache_config, tags=[tags] if isinstance(tags, str) else tags)
        for job, probe in zip(todo, probes):
            job.cache_probe = probe
            job.latency["cache"] = probe.lookup_ms
            if probe.hit and probe.entry is not None:
                entry = probe.entry
                job.result = self._result(
                    job, answer=entry.answer, stage="cache", cache_match=probe.match,
                    cache_similarity=round(probe.similarity or 0.0, 4), cache_age_s=round(entry.age_s(), 3),
                    cached_stage=entry.stage, cache_entry_id=entry.id,
                    reason=f"cache hit ({probe.match}, similarity {probe.similarity:.3f}, "
                           f"cached {entry.age_s():.0f} s ago from stage {entry.stage})",
                )

    def feedback(self, result: RouteResult, correct: bool) -> None:
        """Tell the cache whether an answer was right: a wrong cache hit teaches the adaptive threshold (or drops
        an exact entry), a wrong fresh answer is dropped from the cache."""
        if self.answer_cache is not None and result.cache_entry_id is not None:
            self.answer_cache.feedback(result.cache_entry_id, correct, similarity=result.cache_similarity,
                                       match=result.cache_match)

    def _slm_todo(self, jobs: list[_Job]) -> list[_Job]:
        if self.slm is None:
            return []
        todo = [j for j in jobs if j.open and j.conv is not None and j.conv.local_ok and not j.skip_slm]
        for job in todo:  # the gate's pre-generation step: a hopeless query skips the SLM
            start = time.perf_counter()
            pre = self.gate.pre_decide(job.conv.dicts)  # type: ignore[union-attr]
            if pre is not None:
                job.latency["pre_gate"] = elapsed_ms(start)
                if not pre.keep:
                    job.decision, job.skip_slm = pre, True
                    job.reason = "sent to the fallback: the pre-generation gate expects the SLM to be wrong"
                else:
                    job.pre = pre
        return [j for j in todo if not j.skip_slm]

    def _load_slm(self, todo: list[_Job]) -> None:
        start = time.perf_counter()
        self.slm.load()  # type: ignore[union-attr]  # first use loads the model; reported apart from generation
        load_ms = elapsed_ms(start)
        if load_ms > 5.0:
            for job in todo:
                job.latency["slm_load"] = load_ms

    def _run_slm(self, jobs: list[_Job], config: RunnableConfig | None) -> None:
        todo = self._slm_todo(jobs)
        if not todo:
            return
        self._load_slm(todo)
        start = time.perf_counter()
        convs = [j.conv.dicts for j in todo]  # type: ignore[union-attr]
        spans = self._start_spans(todo, "slm")
        with current(spans, "slm"):
            gens = self._stage("slm", self._slm_call, convs, config)
        self._apply_slm(todo, gens, elapsed_ms(start))

    async def _arun_slm(self, jobs: list[_Job], config: RunnableConfig | None) -> None:
        todo = self._slm_todo(jobs)
        if not todo:
            return
        await asyncio.to_thread(self._load_slm, todo)
        start = time.perf_counter()
        convs = [j.conv.dicts for j in todo]  # type: ignore[union-attr]
        spans = self._start_spans(todo, "slm")
        with current(spans, "slm"):
            gens = await self._astage("slm", self._slm_call, self._aslm_call, convs, config)
        self._apply_slm(todo, gens, elapsed_ms(start))

    def _slm_call(self, convs: list[Any]) -> list[Any]:
        return self.slm.generate_batch(convs, early_exit=self.gate.early_exit())  # type: ignore[union-attr]

    async def _aslm_call(self, convs: list[Any]) -> list[Any]:
        return await self.slm.agenerate_batch(convs, early_exit=self.gate.early_exit())  # type: ignore[union-attr]

    def _apply_slm(self, todo: list[_Job], gens: list[Any], elapsed: float) -> None:
        """Gate each SLM answer; an SLM error escalates the query (or fails it, for overflow="error")."""
        answered = [g for g in gens if not isinstance(g, BaseException)]
        for job, gen in zip(todo, gens):
            if job.otel is not None:
                job.otel.end_slm(gen)
            if isinstance(gen, BaseException):
                if isinstance(gen, QueryTooLongError) and self.slm.overflow == "error":  # type: ignore[union-attr]
                    job.error = gen
                else:
                    job.reason = f"sent to the fallback: {gen}"
                continue
            job.gen = gen
            job.latency["slm"] = round(elapsed / len(answered), 3) if len(answered) > 1 else elapsed
            if job.otel is not None:
                job.otel.start("gate")
            decision = self.gate.decide(gen, job.conv.dicts)  # type: ignore[union-attr]
            if job.pre is not None:  # the trace shows the pre-generation check that let the query through too
                decision = decision.model_copy(update={
                    "reasons": [*job.pre.reasons, *decision.reasons],
                    "features": {**(decision.features or {}), **(job.pre.features or {})} or None})
            job.decision = decision
            if job.otel is not None:
                job.otel.end_gate(decision, self.gate.threshold)
            if decision.keep:
                job.result = self._result(job, answer=gen.text, stage="slm", reason="the gate kept the SLM answer")
            elif gen.early_exit:
                job.reason = f"the gate escalated the SLM answer (early exit after {gen.output_tokens} tokens)"
            else:
                job.reason = "the gate escalated the SLM answer"

    def _fallback_for(self, override: Any | None) -> Any | None:
        return override if override is not None else self.fallback

    def _retrying(self, fallback: Any) -> Any:
        return with_fallback_retry(fallback, self.fallback_retries + 1)

    def _run_fallback(self, jobs: list[_Job], config: RunnableConfig | None, override: Any | None) -> None:
        todo = [j for j in jobs if j.open]
        fallback = self._fallback_for(override)
        if not todo or self._no_fallback(todo, fallback):
            return
        start = time.perf_counter()
        with current(self._start_spans(todo, "fallback", fallback), "fallback"):
            outs = self._retrying(fallback).batch([j.conv.messages for j in todo], config, return_exceptions=True)
        elapsed = elapsed_ms(start)
        for job, out in zip(todo, outs):
            self._finish_fallback(job, out, fallback, elapsed)
        self._log_traffic(todo)

    async def _arun_fallback(self, jobs: list[_Job], config: RunnableConfig | None, override: Any | None) -> None:
        todo = [j for j in jobs if j.open]
        fallback = self._fallback_for(override)
        if not todo or self._no_fallback(todo, fallback):
            return
        start = time.perf_counter()
        with current(self._start_spans(todo, "fallback", fallback), "fallback"):
            outs = await self._retrying(fallback).abatch([j.conv.messages for j in todo], config,
                                                        return_exceptions=True)
        elapsed = elapsed_ms(start)
        for job, out in zip(todo, outs):
            self._finish_fallback(job, out, fallback, elapsed)
        await self._alog_traffic(todo)

    def _no_fallback(self, jobs: list[_Job], fallback: Any | None) -> bool:
        """Handle the jobs when no fallback is configured; True when that was the case."""
        if fallback is not None:
            return False
        for job in jobs:
            if job.gen is not None:
                job.result = self._result(job, answer=job.gen.text, stage="slm", low_confidence=True,
                                          reason=f"{job.reason}; no fallback configured, SLM answer returned")
            else:
                job.error = FallbackUnavailableError(f"No fallback is configured and the query was {job.reason}.")
        return True

    def _finish_fallback(self, job: _Job, out: Any, fallback: Any, took_ms: float) -> None:
        job.latency["llm"] = took_ms
        if job.otel is not None:
            job.otel.end_fallback(out)
        name = fallback_name(fallback)
        if isinstance(out, BaseException):
            err = translate_error(out, fallback)
            if self.on_fallback_error == "return_slm" and job.gen is not None:
                job.result = self._result(
                    job, answer=job.gen.text, stage="slm", low_confidence=True, fallback_tried=True,
                    fallback_model=name, fallback_error=str(err),
                    reason=f"{job.reason}; the fallback failed, SLM answer returned (on_fallback_error='return_slm')",
                )
            else:
                job.error = err
            return
        job.result = self._llm_result(job, out, name)

    def _llm_result(self, job: _Job, message: Any, name: str) -> RouteResult:
        text = message.text if isinstance(message, BaseMessage) else str(message)
        text = text if isinstance(text, str) else str(text)
        usage = getattr(message, "usage_metadata", None) or {}
        job.llm_text = text
        return self._result(
            job, answer=text, stage="llm", reason=job.reason,
            fallback_tried=True, fallback_model=name, llm_message=message,
            extra_usage={"llm_input_tokens": int(usage.get("input_tokens", 0)),
                         "llm_output_tokens": int(usage.get("output_tokens", 0))},
        )

    def _log_traffic(self, jobs: list[_Job]) -> None:
        """Append the escalated jobs' (SLM draft, LLM answer) pairs to the traffic log, when there is one."""
        if self._traffic is None:
            return
        for job in jobs:
            if job.llm_text is not None and job.gen is not None and job.conv is not None:
                self._traffic.append(job.conv.dicts, job.gen, job.llm_text)

    async def _alog_traffic(self, jobs: list[_Job]) -> None:
        """Async :meth:`_log_traffic`: the file is written in a worker thread, never on the event loop."""
        if self._traffic is not None:
            await asyncio.to_thread(self._log_traffic, jobs)

    # ------------------------------------------------------------------ streaming helpers
    def _stream_done(self, job: _Job) -> Iterator[StreamPart]:
        result = self._unwrap(self._collect([job], True)[0])
        pieces = word_pieces(result.answer)
        for piece in pieces[:-1]:
            yield StreamPart(text=piece)
        yield StreamPart(text=pieces[-1] if pieces else "", result=result)

    def _stream_fallback(self, job: _Job, config: RunnableConfig | None, override: Any | None) -> Iterator[StreamPart]:
        fallback = self._fallback_for(override)
        if self._no_fallback([job], fallback):
            yield from self._stream_done(job)
            return
        start, state = time.perf_counter(), StreamRetry(self.fallback_retries)
        self._start_spans([job], "fallback", fallback)
        while True:
            try:
                for chunk in fallback.stream(job.conv.messages, config):  # type: ignore[union-attr]
                    yield StreamPart(text=_chunk_text(state.add(chunk)), chunk=chunk)
            except Exception as exc:  # noqa: BLE001 - retried, or ends the answer (typed)
                wait = state.wait_s(exc)
                if wait is not None:
                    time.sleep(wait)
                    continue
                yield from self._end_stream(job, fallback, start, state, exc)
                return
            parts = self._end_stream(job, fallback, start, state)
            self._log_traffic([job])
            yield from parts
            return

    async def _astream_fallback(
        self, job: _Job, config: RunnableConfig | None, override: Any | None
    ) -> AsyncIterator[StreamPart]:
        fallback = self._fallback_for(override)
        if self._no_fallback([job], fallback):
            for part in self._stream_done(job):
                yield part
            return
        start, state = time.perf_counter(), StreamRetry(self.fallback_retries)
        self._start_spans([job], "fallback", fallback)
        while True:
            try:
                async for chunk in fallback.astream(job.conv.messages, config):  # type: ignore[union-attr]
                    yield StreamPart(text=_chunk_text(state.add(chunk)), chunk=chunk)
            except Exception as exc:  # noqa: BLE001 - retried, or ends the answer (typed)
                wait = state.wait_s(exc)
                if wait is not None:
                    await asyncio.sleep(wait)
                    continue
                for part in self._end_stream(job, fallback, start, state, exc):
                    yield part
                return
            parts = self._end_stream(job, fallback, start, state)
            await self._alog_traffic([job])
            for part in parts:
                yield part
            return

    def _end_stream(self, job: _Job, fallback: Any, start: float, state: StreamRetry,
                    exc: BaseException | None = None) -> list[StreamPart]:
        """The last parts of a streamed fallback answer: its result, or (failed before any chunk) the failure's
        outcome; a failure after a chunk was sent raises the typed error."""
        if exc is not None and state.merged is not None:
            raise self._failed(job, translate_error(exc, fallback)) from exc
        self._finish_fallback(job, exc if exc is not None else state.message, fallback, elapsed_ms(start))
        if exc is not None:
            return list(self._stream_done(job))
        self._finished([job])
        return [StreamPart(result=job.result)]

    # ------------------------------------------------------------------ results
    def _stage(self, name: str, fn: Callable[[Any], Any], arg: Any, config: RunnableConfig | None) -> Any:
        """Run a stage; with callbacks in ``config`` it is a named child run that tracers show."""
        if config and config.get("callbacks"):
            return RunnableLambda(fn, name=name).invoke(arg, config)
        return fn(arg)

    async def _astage(self, name: str, fn: Callable[[Any], Any], afn: Callable[[Any], Any], arg: Any,
                      config: RunnableConfig | None) -> Any:
        """Async :meth:`_stage`: ``afn`` runs the stage (``fn`` is its sync form for the callback run)."""
        if config and config.get("callbacks"):
            return await RunnableLambda(fn, afn, name=name).ainvoke(arg, config)
        return await afn(arg)

    def _result(self, job: _Job, *, answer: str, stage: str, reason: str, extra_usage: dict[str, int] | None = None,
                **kwargs: Any) -> RouteResult:
        latency = dict(job.latency)
        latency["total"] = elapsed_ms(job.start)
        usage: dict[str, int] = {}
        if job.gen is not None:
            usage = {"slm_input_tokens": job.gen.input_tokens, "slm_output_tokens": job.gen.output_tokens}
        usage.update(extra_usage or {})
        result = RouteResult(
            answer=answer, stage=stage, reason=reason, latency_ms=latency, usage=usage,
            signals=job.gen.signals if job.gen is not None else None,
            threshold=self.gate.threshold if job.gen is not None else None,
            gate_reasons=job.decision.reasons if job.decision is not None else [],
            p_correct=job.decision.p_correct if job.decision is not None else None,
            gate_features=job.decision.features if job.decision is not None else None,
            early_exit=job.gen.early_exit if job.gen is not None else False,
            slm_model=self.slm.model_name if job.gen is not None and self.slm is not None else None,
            slm_answer=job.gen.text if job.gen is not None else None,
            **kwargs,
        )
        if (self.answer_cache is not None and job.cache_probe is not None and stage in ("slm", "llm")
                and not result.low_confidence and not getattr(result.llm_message, "tool_calls", None)):
            stored = self.answer_cache.record(job.cache_probe, answer, stage)
            result.cache_entry_id = stored.id if stored is not None else None
        return result

    def _start_spans(self, jobs: list[_Job], stage: str, fallback: Any = None) -> list[QuerySpan | None]:
        """Open the ``stage`` span (``slm`` or ``fallback``) of each traced job; the jobs' query spans."""
        traced = [job.otel for job in jobs if job.otel is not None]
        if traced:
            model = fallback_name(fallback) if stage == "fallback" else self.slm.model_name  # type: ignore[union-attr]
            for span in traced:
                span.start(stage, model)
        return [job.otel for job in jobs]

    def _finished(self, jobs: list[_Job]) -> None:
        """Account each finished job (:meth:`stats`) and close its span: the one place a query ends."""
        for job in jobs:
            if job.counted:
                continue
            job.counted = True
            if job.result is not None:
                self.savings.record(job.result)
            elif job.error is not None:
                self.savings.record_failure(job.error, fallback_tried="llm" in job.latency)
            if job.otel is not None:
                job.otel.finish(job.result, job.error)
                job.otel = None

    def _failed(self, job: _Job, error: BaseException) -> BaseException:
        """A query failed mid-stream: account it and return ``error`` to raise."""
        job.error = error
        self._finished([job])
        return error

    def _collect(self, jobs: list[_Job], return_exceptions: bool) -> list[Any]:
        self._finished(jobs)
        out: list[Any] = [j.error if j.error is not None else j.result for j in jobs]
        if not return_exceptions:
            for item in out:
                if isinstance(item, BaseException):
                    raise item
        return out

    @staticmethod
    def _unwrap(item: Any) -> RouteResult:
        if isinstance(item, BaseException):
            raise item
        return item


def word_pieces(text: str) -> list[str]:
    """Split text into pieces that concatenate back to it exactly (each word with its leading space)."""
    pieces: list[str] = []
    for i, word in enumerate(text.split(" ")):
        pieces.append(word if i == 0 else " " + word)
    return [p for p in pieces if p] or [text]


def _chunk_text(chunk: Any) -> str:
    text = getattr(chunk, "text", chunk)
    return text if isinstance(text, str) else str(text)


__all__ = ["ROUTER_OPTIONS", "SLMRouter", "StreamPart", "word_pieces"]
