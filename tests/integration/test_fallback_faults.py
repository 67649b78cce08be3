"""Fallback faults end to end: the real ChatOllama client against the Ollama-protocol server made to fail.

Each fault gets its typed error, transient ones are retried with back-off (bounded), permanent ones are not,
and ``on_fallback_error="return_slm"`` degrades to the SLM's answer marked low-confidence.
"""

from __future__ import annotations

import socket

import pytest
from langchain_ollama import ChatOllama

from langchain_slm_router import GatePolicy, SLMRouter
from langchain_slm_router.errors import FallbackError, FallbackTimeoutError, FallbackUnavailableError
from langchain_slm_router.testing import OllamaProtocolServer

pytestmark = pytest.mark.integration

QUESTION = "Who painted the Mona Lisa?"
TIMEOUT_S = 20.0  # the client's read timeout; the "slow" fault waits longer than this


@pytest.fixture(scope="module")
def server(slm):
    with OllamaProtocolServer({"smollm2": slm.model_copy(update={"max_new_tokens": 12})}) as srv:
        yield srv


@pytest.fixture(autouse=True)
def _clear_faults(server):
    server.set_fault(None)
    yield
    server.set_fault(None)


def _router(slm, server, *, retries: int = 0, on_error: str = "raise", model: str = "smollm2") -> SLMRouter:
    fallback = ChatOllama(model=model, base_url=server.base_url, num_predict=12, client_kwargs={"timeout": TIMEOUT_S})
    # min_mean_prob=1.0: the gate escalates every SLM answer, so each query reaches the fallback
    return SLMRouter(slm=slm.model_copy(update={"max_new_tokens": 12}), fallback=fallback,
                     gate=GatePolicy(min_mean_prob=1.0), fallback_retries=retries, on_fallback_error=on_error,
                     answer_cache=None)  # each query must reach the fallback


@pytest.mark.parametrize(
    ("fault", "typed"),
    [("drop", FallbackUnavailableError), ("http_error", FallbackError), ("malformed", FallbackError)],
)
def test_fault_gives_typed_error_then_return_slm_degrades(slm, server, fault, typed) -> None:
    server.set_fault(fault)
    with pytest.raises(typed) as info:
        _router(slm, server).route(QUESTION)
    assert "smollm2" in str(info.value) and "return_slm" in str(info.value)
    result = _router(slm, server, on_error="return_slm").route(QUESTION)
    assert result.stage == "slm" and result.low_confidence and result.fallback_tried
    assert result.answer == result.slm_answer and result.answer.strip()
    assert result.fallback_error and result.fallback_model == "ChatOllama(smollm2)"


def test_slow_fallback_times_out_with_typed_error(slm, server) -> None:
    server.set_fault("slow", delay_s=TIMEOUT_S + 10)
    with pytest.raises(FallbackTimeoutError, match="timed out"):
        _router(slm, server).route(QUESTION)


def test_refused_connection_says_how_to_start_ollama(slm) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the block ends: nothing listens there
    fallback = ChatOllama(model="mistral", base_url=f"http://127.0.0.1:{port}")
    router = SLMRouter(slm=slm, fallback=fallback, gate=GatePolicy(min_mean_prob=1.0), fallback_retries=1)
    with pytest.raises(FallbackUnavailableError) as info:
        router.route(QUESTION)
    msg = str(info.value)
    assert "ollama serve" in msg and "ollama pull mistral" in msg and str(port) in msg


@pytest.mark.parametrize("fault", ["drop", "http_error", "malformed"])
def test_transient_fault_is_retried_and_recovers(slm, server, fault) -> None:
    server.set_fault(fault, times=2)
    before = server.request_count
    result = _router(slm, server, retries=2).route(QUESTION)
    assert result.stage == "llm" and result.answer.strip() and not result.low_confidence
    assert server.request_count - before == 3  # two failures, then the answer


def test_retries_are_bounded(slm, server) -> None:
    server.set_fault("http_error", status=503)
    before = server.request_count
    with pytest.raises(FallbackError, match="503"):
        _router(slm, server, retries=2).route(QUESTION)
    assert server.request_count - before == 3


def test_unknown_model_is_not_retried_and_says_pull(slm, server) -> None:
    before = server.request_count
    with pytest.raises(FallbackError, match="ollama pull mistral"):
        _router(slm, server, retries=3, model="mistral").route(QUESTION)
    assert server.request_count - before == 1


def test_batch_failures_stay_with_their_query(slm, server) -> None:
    server.set_fault("http_error", times=1, status=500)
    router = _router(slm, server, retries=1)
    results = router.route_batch([QUESTION, "What is 2 + 2?", "", "Name a planet."], return_exceptions=True)
    assert results[1].stage == "math" and results[1].answer == "4"
    assert type(results[2]).__name__ == "EmptyQueryError"
    assert results[0].stage == "llm" and results[3].stage == "llm"  # the failed call was retried


def test_stream_retries_before_the_first_chunk_and_degrades(slm, server) -> None:
    server.set_fault("drop", times=1)
    parts = list(_router(slm, server, retries=1).stream(QUESTION))
    assert parts[-1].result.stage == "llm"
    assert "".join(p.text for p in parts) == parts[-1].result.answer
    server.set_fault("http_error")
    parts = list(_router(slm, server, on_error="return_slm").stream(QUESTION))
    result = parts[-1].result
    assert result.low_confidence and result.stage == "slm" and "".join(p.text for p in parts) == result.answer


async def test_async_paths_get_the_same_typed_errors(slm, server) -> None:
    server.set_fault("drop")
    with pytest.raises(FallbackUnavailableError):
        await _router(slm, server).aroute(QUESTION)
    results = await _router(slm, server).aroute_batch([QUESTION, "What is 3 * 3?"], return_exceptions=True)
    assert isinstance(results[0], FallbackUnavailableError) and results[1].answer == "9"
    server.set_fault("drop", times=1)
    parts = [p async for p in _router(slm, server, retries=1).astream(QUESTION)]
    assert parts[-1].result.stage == "llm"


def test_stream_broken_after_its_first_chunk_raises_typed_error(slm, server) -> None:
    # chunks already sent cannot be taken back, so there is no retry and no SLM substitute mid-answer
    server.set_fault("malformed", times=1)
    received = []
    with pytest.raises(FallbackError, match="malformed"):
        for part in _router(slm, server, retries=2, on_error="return_slm").stream(QUESTION):
            received.append(part.text)
    assert received and received[0].strip()
