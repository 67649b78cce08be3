"""Fallback construction, naming, error translation and retry policy (no network, no model)."""

from __future__ import annotations

import json

import httpx
import pytest
from langchain_core.messages import AIMessage
from langchain_core.runnables import RunnableLambda
from langchain_ollama import ChatOllama
from ollama import ResponseError

from langchain_slm_router.errors import FallbackError, FallbackTimeoutError, FallbackUnavailableError, ModelLoadError
from langchain_slm_router.fallback import (
    default_fallback,
    fallback_name,
    is_transient,
    ollama_base_url,
    translate_error,
    with_fallback_retry,
)


@pytest.mark.parametrize(
    ("given", "env", "expected"),
    [
        (None, None, "http://localhost:11434"),
        (None, "0.0.0.0", "http://localhost:11434"),
        (None, "gpu-box:8080", "http://gpu-box:8080"),
        (None, "https://ollama.example.com", "https://ollama.example.com"),
        ("http://127.0.0.1:9999/", "other:1", "http://127.0.0.1:9999"),
        ("myhost", None, "http://myhost:11434"),
    ],
)
def test_base_url_follows_argument_then_ollama_host(monkeypatch, given, env, expected) -> None:
    if env is None:
        monkeypatch.delenv("OLLAMA_HOST", raising=False)
    else:
        monkeypatch.setenv("OLLAMA_HOST", env)
    assert ollama_base_url(given) == expected


def test_default_fallback_is_chat_ollama_mistral_with_a_timeout(monkeypatch) -> None:
    monkeypatch.setenv("OLLAMA_HOST", "box:1234")
    fb = default_fallback()
    assert isinstance(fb, ChatOllama)
    assert fb.model == "mistral" and fb.base_url == "http://box:1234"
    assert fb.client_kwargs["timeout"] == 120.0
    assert fallback_name(fb) == "ChatOllama(mistral)"
    assert fallback_name(fb.bind_tools([]).with_retry()) == "ChatOllama(mistral)"
    assert default_fallback("llama3", "http://h:1", timeout=None, num_predict=8).client_kwargs == {}


def _status_error(code: int) -> ResponseError:
    return ResponseError(f"status {code}", code)


@pytest.mark.parametrize(
    ("exc", "typed", "transient"),
    [
        (httpx.ConnectError("[Errno 111] Connection refused"), FallbackUnavailableError, True),
        (httpx.RemoteProtocolError("Server disconnected"), FallbackUnavailableError, True),
        (ConnectionRefusedError(111, "refused"), FallbackUnavailableError, True),
        (httpx.ReadTimeout("timed out"), FallbackTimeoutError, True),
        (_status_error(500), FallbackError, True),
        (_status_error(503), FallbackError, True),
        (_status_error(429), FallbackError, True),
        (_status_error(404), FallbackError, False),
        (_status_error(400), FallbackError, False),
        (json.JSONDecodeError("Unterminated string", '{"a', 1), FallbackError, True),
        (ValueError("something odd"), FallbackError, False),
    ],
)
def test_errors_are_typed_and_classified(exc, typed, transient) -> None:
    fb = ChatOllama(model="mistral", base_url="http://127.0.0.1:9")
    err = translate_error(exc, fb)
    assert type(err) is typed and err.__cause__ is exc
    assert "on_fallback_error='return_slm'" in str(err)
    assert is_transient(exc) is transient


def test_unreachable_ollama_message_says_how_to_fix_it() -> None:
    fb = ChatOllama(model="mistral", base_url="http://127.0.0.1:9")
    msg = str(translate_error(httpx.ConnectError("refused"), fb))
    assert "ollama serve" in msg and "ollama pull mistral" in msg and "http://127.0.0.1:9" in msg
    assert "OLLAMA_HOST" in msg
    assert "ollama pull mistral" in str(translate_error(_status_error(404), fb))


def test_router_errors_pass_through_untouched() -> None:
    err = ModelLoadError("no weights")
    assert translate_error(err, None) is err and not is_transient(err)


def _flaky(failures: list[BaseException]):
    """A runnable that raises the given errors in turn, then answers; counts its calls (pure retry logic)."""
    calls = {"n": 0}

    def run(_: object) -> AIMessage:
        calls["n"] += 1
        if failures:
            raise failures.pop(0)
        return AIMessage(content="ok")

    return RunnableLambda(run), calls


def test_transient_failures_are_retried_with_langchain_retry() -> None:
    runnable, calls = _flaky([httpx.ConnectError("refused"), _status_error(503)])
    retrying = with_fallback_retry(runnable, 3, initial_wait=0.01, max_wait=0.02)
    assert retrying.invoke("q").content == "ok" and calls["n"] == 3


def test_retries_are_bounded() -> None:
    runnable, calls = _flaky([httpx.ConnectError("refused")] * 5)
    with pytest.raises(httpx.ConnectError):
        with_fallback_retry(runnable, 2, initial_wait=0.01, max_wait=0.02).invoke("q")
    assert calls["n"] == 2


def test_permanent_failures_are_not_retried() -> None:
    runnable, calls = _flaky([_status_error(404)])
    with pytest.raises(ResponseError):
        with_fallback_retry(runnable, 3, initial_wait=0.01).invoke("q")
    assert calls["n"] == 1


def test_batch_retries_only_failed_items() -> None:
    seen: list[str] = []

    def run(q: str) -> AIMessage:
        seen.append(q)
        if q == "bad" and seen.count("bad") == 1:
            raise httpx.ReadTimeout("slow")
        if q == "never":
            raise _status_error(400)
        return AIMessage(content=q)

    out = with_fallback_retry(RunnableLambda(run), 3, initial_wait=0.01).batch(
        ["a", "bad", "never"], return_exceptions=True
    )
    assert out[0].content == "a" and out[1].content == "bad" and isinstance(out[2], ResponseError)
    assert seen.count("a") == 1 and seen.count("bad") == 2 and seen.count("never") == 1


def test_single_attempt_means_no_wrapper() -> None:
    runnable, _ = _flaky([])
    assert with_fallback_retry(runnable, 1) is runnable
