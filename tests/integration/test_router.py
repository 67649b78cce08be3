"""The routing core end to end: real sympy, real SmolLM2, real ChatOllama against the Ollama-protocol server.

The module's router uses the seed's threshold gate, so that every stage answers part of a small batch; the shipped
learned gate (the default for this SLM) is tested in test_signals_live.py.
"""

from __future__ import annotations

import socket

import pytest
import sympy
from langchain_ollama import ChatOllama

from langchain_slm_router import GatePolicy, SLMRouter
from langchain_slm_router.errors import EmptyQueryError, FallbackUnavailableError, QueryTooLongError

pytestmark = pytest.mark.integration

MIXED = [
    "What is 17 * 23 + 4?",
    "Solve 3x - 7 = 20",
    "derivative of x^2*cos(x)",
    "What is the chemical symbol for gold?",
    "What is the capital of France?",
    "What color is the sky on a clear day?",
    "A train leaves Chicago at 3pm at 60 mph and another leaves New York at 4pm at 80 mph, 790 miles "
    "apart, heading towards each other. At what time do they meet?",
]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def router(slm, fallback_llm) -> SLMRouter:
    return SLMRouter(slm=slm, fallback=fallback_llm, answer_cache=None, gate="threshold")  # tests repeat questions


@pytest.fixture(scope="module")
def mixed_results(router):
    return router.route_batch(MIXED)


def test_each_stage_answers_part_of_the_mixed_batch(mixed_results) -> None:
    stages = [r.stage for r in mixed_results]
    assert set(stages) == {"math", "slm", "llm"}, stages
    # math answers are exact
    assert mixed_results[0].stage == "math" and mixed_results[0].answer == "395"
    assert mixed_results[1].stage == "math" and sympy.sympify(mixed_results[1].answer.split("=")[1]) == 9
    deriv = sympy.sympify(mixed_results[2].answer)
    x = sympy.Symbol("x")
    assert sympy.simplify(deriv - sympy.diff(x**2 * sympy.cos(x), x)) == 0


def test_gate_decisions_agree_with_the_signals(mixed_results) -> None:
    for r in mixed_results:
        if r.stage == "math":
            assert r.signals is None and not r.fallback_tried and "slm" not in r.latency_ms
            continue
        assert r.signals is not None and 0 < r.signals.mean_prob <= 1 and r.threshold == 0.6
        assert 0 < r.signals.min_prob <= r.signals.mean_prob and r.signals.mean_entropy >= 0
        if r.stage == "slm":
            assert r.signals.mean_prob >= 0.6 and not r.fallback_tried and r.answer == r.slm_answer
        else:
            assert r.signals.mean_prob < 0.6 and r.fallback_tried
            assert r.fallback_model and "smollm2" in r.fallback_model
            assert r.answer.strip() and r.latency_ms["llm"] > 0
            assert r.usage["llm_output_tokens"] > 0
        assert r.latency_ms["slm"] > 0 and r.latency_ms["total"] >= r.latency_ms["slm"]


def test_trace_is_json_ready(mixed_results) -> None:
    trace = mixed_results[3].trace()
    assert {"stage", "answer", "signals", "threshold", "latency_ms", "fallback_tried"} <= trace.keys()
    assert "llm_message" not in trace


def test_single_route_matches_batch(router, mixed_results) -> None:
    for query, batched in zip(MIXED[:4], mixed_results[:4]):
        single = router.route(query)
        assert single.stage == batched.stage and single.answer == batched.answer


def test_stream_of_a_kept_answer_concatenates_to_it(router) -> None:
    parts = list(router.stream("What is the chemical symbol for gold?"))
    result = parts[-1].result
    assert result is not None and result.stage == "slm" and len(parts) > 1
    assert "".join(p.text for p in parts) == result.answer


def test_stream_of_an_escalated_answer_streams_fallback_chunks(router) -> None:
    strict = router.model_copy(update={"gate": GatePolicy(min_mean_prob=0.999)})
    parts = list(strict.stream("What is the capital of France?"))
    result = parts[-1].result
    assert result is not None and result.stage == "llm"
    assert sum(p.chunk is not None for p in parts) > 1
    assert "".join(p.text for p in parts) == result.answer


async def test_async_route_and_batch(router, mixed_results) -> None:
    single = await router.aroute(MIXED[3])
    assert single.stage == mixed_results[3].stage and single.answer == mixed_results[3].answer
    results = await router.aroute_batch(MIXED[:2] + [""], return_exceptions=True)
    assert results[0].answer == "395" and isinstance(results[2], EmptyQueryError)
    parts = [p async for p in router.astream(MIXED[0])]
    assert parts[-1].result.answer == "395"


def test_unreachable_fallback_raises_typed_error_or_returns_slm(slm) -> None:
    down = ChatOllama(model="mistral", base_url=f"http://127.0.0.1:{_closed_port()}")
    strict = GatePolicy(min_mean_prob=0.999)
    raising = SLMRouter(slm=slm, fallback=down, gate=strict, fallback_retries=0)
    with pytest.raises(FallbackUnavailableError, match="ollama"):
        raising.route("What is the capital of France?")
    lenient = raising.model_copy(update={"on_fallback_error": "return_slm"})
    r = lenient.route("What is the capital of France?")
    assert r.stage == "slm" and r.low_confidence and r.fallback_tried and r.fallback_error
    assert r.answer == r.slm_answer and r.answer


def test_no_fallback_returns_slm_answer_marked(slm) -> None:
    r = SLMRouter(slm=slm, fallback=None, gate=GatePolicy(min_mean_prob=0.999)).route("Who wrote Hamlet?")
    assert r.stage == "slm" and r.low_confidence and not r.fallback_tried


def test_prompt_over_the_slm_limit_is_escalated_or_rejected(slm, fallback_llm) -> None:
    small = slm.model_copy(update={"max_input_tokens": 40})
    long_q = "Please summarise: " + "the quick brown fox jumps over the lazy dog. " * 20
    r = SLMRouter(slm=small, fallback=fallback_llm).route(long_q)
    assert r.stage == "llm" and r.signals is None and "tokens" in r.reason
    with pytest.raises(QueryTooLongError):
        SLMRouter(slm=small.model_copy(update={"overflow": "error"}), fallback=fallback_llm).route(long_q)
    cut = SLMRouter(slm=small.model_copy(update={"overflow": "truncate"}), fallback=None,
                    gate=GatePolicy(min_mean_prob=0.0))
    r = cut.route(long_q)
    assert r.stage == "slm" and r.usage["slm_input_tokens"] <= 40
