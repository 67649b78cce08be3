"""OpenTelemetry spans of the router, read back with the SDK's in-memory exporter: one span per query, a child per
stage, parent/child links, GenAI and router attributes, errors, batches and streams; no span work without a
tracer provider. Real sympy; a scripted SLM and fallback (routing logic only; no model loads)."""

from __future__ import annotations

from typing import Any

import pytest
from langchain_core.messages import AIMessage
from langchain_core.runnables import RunnableLambda
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import NoOpTracerProvider, ProxyTracerProvider, SpanKind, StatusCode

from langchain_slm_router import telemetry
from langchain_slm_router.errors import FallbackUnavailableError
from langchain_slm_router.fallback import fallback_name
from langchain_slm_router.gates import GatePolicy
from langchain_slm_router.math_engine import MathEngine
from langchain_slm_router.router import SLMRouter
from langchain_slm_router.telemetry import ROUTE_SPAN, tracer_for
from tests.unit.test_router_scripted import SCRIPT, ScriptedSLM

SEEN_CURRENT: list[Any] = []


def llm(messages: list[Any]) -> AIMessage:
    SEEN_CURRENT.append(trace.get_current_span())
    if messages[-1].content == "fail?":
        raise ConnectionError("connection refused")
    return AIMessage(content="from the LLM", response_metadata={"model_name": "big-model"},
                     usage_metadata={"input_tokens": 11, "output_tokens": 4, "total_tokens": 15})


FALLBACK = RunnableLambda(llm)


@pytest.fixture
def traced() -> tuple[SLMRouter, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    slm = ScriptedSLM(script={**SCRIPT, "fail?": SCRIPT["unsure?"]}, max_input_tokens=30, calls=[])
    router = SLMRouter(slm=slm, gate=GatePolicy(min_mean_prob=0.6), fallback=FALLBACK, math_engine=MathEngine(),
                       fallback_retries=0, tracer_provider=provider, answer_cache=None)  # queries repeat
    SEEN_CURRENT.clear()
    return router, exporter


def tree(exporter: InMemorySpanExporter) -> dict[int, tuple[ReadableSpan, list[ReadableSpan]]]:
    """Each query span by span id, with its children (checked to be in the same trace)."""
    spans = exporter.get_finished_spans()
    roots = {s.context.span_id: (s, []) for s in spans if s.name == ROUTE_SPAN}
    for s in spans:
        if s.name != ROUTE_SPAN:
            assert s.parent is not None and s.parent.span_id in roots, s.name
            root = roots[s.parent.span_id][0]
            assert s.context.trace_id == root.context.trace_id
            roots[s.parent.span_id][1].append(s)
    return roots


def only_query(exporter: InMemorySpanExporter) -> tuple[ReadableSpan, dict[str, ReadableSpan]]:
    (root, children), = tree(exporter).values()
    return root, {c.attributes["slm_router.stage"]: c for c in children}


def test_a_math_answer_is_a_query_span_with_a_math_child(traced) -> None:
    router, exporter = traced
    result = router.route("What is 2+3?")
    root, stages = only_query(exporter)
    assert list(stages) == ["math"]
    assert stages["math"].name == "slm_router.math" and stages["math"].attributes["slm_router.math.solved"] is True
    assert root.attributes["slm_router.stage"] == "math" == result.stage
    assert root.attributes["gen_ai.operation.name"] == "chat"
    assert root.attributes["gen_ai.request.model"] == router.display_name
    assert root.attributes["slm_router.cache_hit"] is False
    assert root.attributes["slm_router.fallback_tried"] is False
    assert root.parent is None and root.status.status_code == StatusCode.UNSET


def test_a_kept_slm_answer_has_slm_and_gate_children_with_genai_attributes(traced) -> None:
    router, exporter = traced
    result = router.route("sure?")
    root, stages = only_query(exporter)
    assert set(stages) == {"math", "slm", "gate"}
    assert stages["math"].attributes["slm_router.math.solved"] is False  # the math engine declined first
    slm = stages["slm"]
    assert slm.name == "chat scripted" and slm.kind == SpanKind.INTERNAL
    assert slm.attributes["gen_ai.request.model"] == "scripted"
    assert slm.attributes["gen_ai.usage.input_tokens"] == result.usage["slm_input_tokens"]
    assert slm.attributes["gen_ai.usage.output_tokens"] == result.usage["slm_output_tokens"]
    assert stages["gate"].attributes["slm_router.gate.keep"] is True
    assert stages["gate"].attributes["slm_router.threshold"] == 0.6
    assert slm.end_time <= stages["gate"].start_time  # the gate decides on the finished answer
    assert root.attributes["slm_router.stage"] == "slm" and root.attributes["slm_router.threshold"] == 0.6
    assert root.attributes["slm_router.early_exit"] is False
    assert root.attributes["gen_ai.response.model"] == "scripted"
    assert root.start_time <= slm.start_time and root.end_time >= stages["gate"].end_time


def test_an_escalated_query_has_a_current_client_span_for_the_fallback(traced) -> None:
    router, exporter = traced
    result = router.route("unsure?")
    root, stages = only_query(exporter)
    assert set(stages) == {"math", "slm", "gate", "fallback"}
    fb = stages["fallback"]
    assert fb.kind == SpanKind.CLIENT and fb.name == f"chat {fallback_name(FALLBACK)}"
    assert fb.attributes["gen_ai.usage.input_tokens"] == 11 and fb.attributes["gen_ai.usage.output_tokens"] == 4
    assert fb.attributes["gen_ai.response.model"] == "big-model"
    assert stages["gate"].attributes["slm_router.gate.keep"] is False
    assert SEEN_CURRENT[-1].get_span_context().span_id == fb.context.span_id  # clients nest under it
    assert root.attributes["slm_router.escalation_reason"] == "gate"
    assert root.attributes["gen_ai.usage.output_tokens"] == result.output_tokens


def test_a_failed_query_has_error_status_on_its_stage_and_query_spans(traced) -> None:
    router, exporter = traced
    with pytest.raises(FallbackUnavailableError):
        router.route("fail?")
    root, stages = only_query(exporter)
    assert stages["fallback"].status.status_code == StatusCode.ERROR
    assert root.status.status_code == StatusCode.ERROR
    assert any(e.name == "exception" for e in root.events)


def test_each_query_of_a_batch_and_a_stream_gets_its_own_span_tree(traced) -> None:
    router, exporter = traced
    router.route_batch(["sure?", "unsure?", "What is 2+3?", "  "], return_exceptions=True)
    roots = tree(exporter)
    assert sorted(r.attributes.get("slm_router.stage", "error") for r, _ in roots.values()) == \
        ["error", "llm", "math", "slm"]
    assert len({r.context.trace_id for r, _ in roots.values()}) == 4
    exporter.clear()
    parts = list(router.stream("unsure?"))
    root, stages = only_query(exporter)
    assert root.attributes["slm_router.stage"] == "llm" == parts[-1].result.stage
    assert stages["fallback"].attributes["slm_router.stage"] == "fallback"


async def test_async_queries_join_the_callers_trace(traced) -> None:
    router, exporter = traced
    tracer = router.tracer_provider.get_tracer("caller")
    with tracer.start_as_current_span("rag-chain") as parent:
        await router.aroute("unsure?")
    spans = {s.name: s for s in exporter.get_finished_spans()}
    route = spans[ROUTE_SPAN]
    assert route.parent.span_id == parent.get_span_context().span_id
    assert route.context.trace_id == parent.get_span_context().trace_id


def test_no_tracer_provider_means_no_span_work(monkeypatch) -> None:
    assert isinstance(trace.get_tracer_provider(), ProxyTracerProvider)  # nothing in the test process sets one
    assert tracer_for() is None and tracer_for(NoOpTracerProvider()) is None

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("span work without a tracer provider")

    monkeypatch.setattr("langchain_slm_router.router.QuerySpan", refuse)
    monkeypatch.setattr(telemetry.QuerySpan, "start", refuse)
    slm = ScriptedSLM(script=SCRIPT, max_input_tokens=30, calls=[])
    router = SLMRouter(slm=slm, gate=GatePolicy(min_mean_prob=0.6), fallback=FALLBACK, math_engine=MathEngine(),
                       fallback_retries=0, answer_cache=None)  # queries repeat
    assert [r.stage for r in router.route_batch(["sure?", "unsure?", "What is 2+3?"])] == ["slm", "llm", "math"]
    assert list(router.stream("unsure?"))[-1].result.stage == "llm"
