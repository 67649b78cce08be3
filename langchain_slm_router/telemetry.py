"""OpenTelemetry spans of the router, written against ``opentelemetry-api`` only.

Each routed query is one span, ``slm_router.route``, with a child span per stage that ran:

* ``slm_router.math``: the sympy stage (``slm_router.math.solved``, ``slm_router.math_kind``);
* ``chat <SLM model>``: the SLM's generation (GenAI attributes: ``gen_ai.operation.name``,
  ``gen_ai.request.model``, ``gen_ai.usage.input_tokens``, ``gen_ai.usage.output_tokens``; ``slm_router.early_exit``);
* ``slm_router.gate``: the gate's decision (``slm_router.gate.keep``, ``slm_router.p_correct``,
  ``slm_router.threshold``);
* ``chat <fallback>``: the fallback call (span kind ``CLIENT``; GenAI attributes as above plus
  ``gen_ai.response.model`` when the fallback reports it). For a single query it is the current span while the
  fallback runs, so an instrumented HTTP client carries the trace on to the LLM server.

The query span carries the outcome: ``slm_router.stage``, ``slm_router.reason``, ``slm_router.fallback_tried``,
``slm_router.low_confidence``, ``slm_router.escalation_reason``, ``slm_router.cache_hit``, ``slm_router.p_correct``,
``slm_router.threshold``, ``slm_router.early_exit``, and the total ``gen_ai.usage.*`` tokens; a failed query gets
status ``ERROR`` and the exception as a span event.

The SDK and exporters are the application's choice (``pip install langchain-slm-router[otel]``). With no tracer
provider set (the API's default proxy or a no-op provider) :func:`tracer_for` returns ``None`` and the router does
no span work at all: it keeps no span objects and computes no attributes.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import NoOpTracerProvider, ProxyTracerProvider, Span, SpanKind, Status, StatusCode, Tracer

from langchain_slm_router.savings import escalation_reason

TRACER_NAME = "langchain_slm_router"
"""The instrumentation scope name of the router's spans."""

ROUTE_SPAN = "slm_router.route"
"""The name of the span of one routed query."""

_NO_PROVIDER = (ProxyTracerProvider, NoOpTracerProvider)
_tracers: dict[int, tuple[Any, Tracer]] = {}


def tracer_for(provider: Any | None = None) -> Tracer | None:
    """The router's tracer from ``provider`` (default: the global one), or ``None`` when no provider is set."""
    if provider is None:
        provider = trace.get_tracer_provider()
    if isinstance(provider, _NO_PROVIDER):
        return None
    cached = _tracers.get(id(provider))
    if cached is not None and cached[0] is provider:
        return cached[1]
    tracer = provider.get_tracer(TRACER_NAME)
    if len(_tracers) > 16:
        _tracers.clear()
    _tracers[id(provider)] = (provider, tracer)
    return tracer


class QuerySpan:
    """The span of one routed query and the stage spans open under it.

    Args:
        tracer: the tracer (from :func:`tracer_for`).
        router_name: the router's display name (``gen_ai.request.model`` of the query span).
    """

    __slots__ = ("tracer", "root", "stages", "_context")

    def __init__(self, tracer: Tracer, router_name: str) -> None:
        self.tracer = tracer
        self.root = tracer.start_span(ROUTE_SPAN, attributes={"gen_ai.operation.name": "chat",
                                                              "gen_ai.request.model": router_name})
        self._context = trace.set_span_in_context(self.root)
        self.stages: dict[str, Span] = {}

    # ------------------------------------------------------------------ stages
    def start(self, stage: str, model: str | None = None) -> Span:
        """Open the span of ``stage`` (``math``, ``slm``, ``gate``, ``fallback``) under the query span."""
        if model is not None:
            span = self.tracer.start_span(
                f"chat {model}", self._context, kind=SpanKind.CLIENT if stage == "fallback" else SpanKind.INTERNAL,
                attributes={"gen_ai.operation.name": "chat", "gen_ai.request.model": model, "slm_router.stage": stage},
            )
        else:
            span = self.tracer.start_span(f"slm_router.{stage}", self._context, attributes={"slm_router.stage": stage})
        self.stages[stage] = span
        return span

    def end(self, stage: str, error: BaseException | None = None, **attributes: Any) -> None:
        """Close the span of ``stage`` with ``attributes`` (``None`` values skipped) or ``error``."""
        span = self.stages.pop(stage, None)
        if span is None:
            return
        _set(span, attributes)
        if error is not None:
            _fail(span, error)
        span.end()

    def end_math(self, answer: Any | None) -> None:
        self.end("math", **{"slm_router.math.solved": answer is not None,
                            "slm_router.math_kind": getattr(answer, "kind", None)})

    def end_slm(self, gen: Any) -> None:
        """Close the SLM span with a generation's token usage (or the error it returned)."""
        if isinstance(gen, BaseException):
            self.end("slm", gen)
            return
        self.end("slm", **{"gen_ai.usage.input_tokens": gen.input_tokens,
                           "gen_ai.usage.output_tokens": gen.output_tokens, "slm_router.early_exit": gen.early_exit,
                           "slm_router.mean_prob": getattr(gen.signals, "mean_prob", None)})

    def end_gate(self, decision: Any, threshold: float | None) -> None:
        self.end("gate", **{"slm_router.gate.keep": decision.keep, "slm_router.p_correct": decision.p_correct,
                            "slm_router.threshold": threshold})

    def end_fallback(self, out: Any) -> None:
        """Close the fallback span with its message's token usage and model (or its error)."""
        if isinstance(out, BaseException):
            self.end("fallback", out)
            return
        usage = getattr(out, "usage_metadata", None) or {}
        metadata = getattr(out, "response_metadata", None) or {}
        self.end("fallback", **{"gen_ai.usage.input_tokens": usage.get("input_tokens"),
                                "gen_ai.usage.output_tokens": usage.get("output_tokens"),
                                "gen_ai.response.model": metadata.get("model_name") or metadata.get("model")})

    # ------------------------------------------------------------------ the query
    def finish(self, result: Any | None = None, error: BaseException | None = None) -> None:
        """Close open stage spans and the query span with the answer's trace (or the error)."""
        for stage in list(self.stages):
            self.end(stage, error)
        if result is not None:
            _set(self.root, {
                "slm_router.stage": result.stage, "slm_router.reason": result.reason,
                "slm_router.fallback_tried": result.fallback_tried, "slm_router.low_confidence": result.low_confidence,
                "slm_router.escalation_reason": escalation_reason(result),
                "slm_router.cache_hit": result.stage == "cache",
                "slm_router.p_correct": result.p_correct, "slm_router.threshold": result.threshold,
                "slm_router.early_exit": result.early_exit, "slm_router.math_kind": result.math_kind,
                "gen_ai.response.model": _answering_model(result),
                "gen_ai.usage.input_tokens": result.input_tokens, "gen_ai.usage.output_tokens": result.output_tokens,
                "slm_router.latency_ms": result.latency_ms.get("total"),
            })
        if error is not None:
            _fail(self.root, error)
        self.root.end()


@contextmanager
def current(queries: Sequence[QuerySpan | None], stage: str) -> Iterator[None]:
    """Make the ``stage`` span current while a single query runs it (so instrumented clients nest under it);
    several queries in one batched call have no single current span."""
    if len(queries) != 1 or queries[0] is None or stage not in queries[0].stages:
        yield
        return
    with trace.use_span(queries[0].stages[stage], end_on_exit=False):
        yield


def _answering_model(result: Any) -> str | None:
    if result.stage == "llm":
        return result.fallback_model
    if result.stage == "slm":
        return result.slm_model
    return result.stage


def _set(span: Span, attributes: dict[str, Any]) -> None:
    span.set_attributes({k: v for k, v in attributes.items() if v is not None})


def _fail(span: Span, error: BaseException) -> None:
    span.record_exception(error)
    span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"[:300]))


__all__ = ["ROUTE_SPAN", "TRACER_NAME", "QuerySpan", "current", "tracer_for"]
