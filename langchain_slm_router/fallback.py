"""Stage 3: the large-model fallback, its errors and its retries.

The fallback is any LangChain chat model. The default is ``ChatOllama(model="mistral")`` from langchain-ollama,
at ``base_url`` or, when that is not given, at ``OLLAMA_HOST`` (the variable Ollama's own CLI reads; default
``http://localhost:11434``). Users point it at their own ``ollama serve``.

Failures of the fallback are turned into the typed errors of :mod:`langchain_slm_router.errors`:

* connection refused / host unreachable / connection dropped -> :class:`FallbackUnavailableError`, whose message
  says how to start Ollama and pull the model, and how to degrade instead (``on_fallback_error="return_slm"``);
* read/connect timeouts -> :class:`FallbackTimeoutError`;
* HTTP errors, unknown models and malformed responses -> :class:`FallbackError`.

Transient failures (connection errors, timeouts, HTTP 5xx and 429, dropped or malformed streams) are retried with
exponential back-off through LangChain's own :meth:`~langchain_core.runnables.Runnable.with_retry` machinery;
permanent ones (HTTP 4xx such as an unknown model) are not.
"""

from __future__ import annotations

import json
import os
from typing import Any

from langchain_core.runnables import Runnable
from langchain_core.runnables.config import get_config_list
from langchain_core.runnables.retry import RunnableRetry

from langchain_slm_router.errors import (
    FallbackError,
    FallbackTimeoutError,
    FallbackUnavailableError,
    SLMRouterError,
)

DEFAULT_OLLAMA_HOST = "http://localhost:11434"
DEFAULT_FALLBACK_MODEL = "mistral"


def ollama_base_url(base_url: str | None = None) -> str:
    """The Ollama URL to use: ``base_url``, else ``OLLAMA_HOST``, else localhost:11434, normalised.

    Accepts the forms ``OLLAMA_HOST`` takes (``host``, ``host:port``, ``0.0.0.0``, full URLs).
    """
    raw = (base_url or os.environ.get("OLLAMA_HOST") or DEFAULT_OLLAMA_HOST).strip().rstrip("/")
    scheme, _, rest = raw.rpartition("://")
    scheme = scheme or "http"
    host, _, port = rest.partition(":")
    if host in ("", "0.0.0.0"):  # the server's "listen everywhere" address; clients connect to localhost
        host = "localhost"
    if not port and "/" not in rest:
        port = "11434" if scheme == "http" else ""
    return f"{scheme}://{host}{':' + port if port else ''}"


def default_fallback(
    model: str = DEFAULT_FALLBACK_MODEL,
    base_url: str | None = None,
    *,
    timeout: float | None = 120.0,
    **kwargs: Any,
) -> Any:
    """The default fallback: ``ChatOllama(model=model)`` at ``base_url`` / ``OLLAMA_HOST``.

    Args:
        model: the Ollama model name (``ollama pull <model>`` first).
        base_url: the server; default ``OLLAMA_HOST`` or ``http://localhost:11434``.
        timeout: seconds before an HTTP request to Ollama times out (``None``: no limit).
        **kwargs: passed to ``ChatOllama`` (``temperature``, ``num_predict``, ``num_ctx`` ...).

    Creating it does not contact the server; the first call does.
    """
    import httpx
    from langchain_ollama import ChatOllama

    client_kwargs = dict(kwargs.pop("client_kwargs", None) or {})
    if timeout is not None:
        client_kwargs.setdefault("timeout", timeout)
    # No pooled keep-alive connections on the async client: a pooled connection stays bound to the event loop
    # that opened it, so the next asyncio.run() (LlamaIndex's sync wrappers start one per call) would fail with
    # "Event loop is closed".
    async_kwargs = dict(kwargs.pop("async_client_kwargs", None) or {})
    async_kwargs.setdefault("limits", httpx.Limits(max_keepalive_connections=0))
    return ChatOllama(model=model, base_url=ollama_base_url(base_url), client_kwargs=client_kwargs,
                      async_client_kwargs=async_kwargs, **kwargs)


def unwrap_fallback(fallback: Any) -> Any:
    """The chat model under bindings and retries (``bind_tools``, ``with_retry``, ``with_config``)."""
    seen = 0
    while hasattr(fallback, "bound") and seen < 10:
        fallback = fallback.bound
        seen += 1
    return fallback


def fallback_name(fallback: Any) -> str:
    """A short name for traces: ``ChatOllama(mistral)``, ``ChatOpenAI(gpt-4o-mini)``, or the class name."""
    inner = unwrap_fallback(fallback)
    model = next(
        (getattr(inner, attr) for attr in ("model", "model_name", "model_id") if isinstance(getattr(inner, attr, None), str)),
        None,
    )
    cls = type(inner).__name__
    return f"{cls}({model})" if model else cls


def _where(fallback: Any) -> tuple[str | None, str | None]:
    inner = unwrap_fallback(fallback)
    model = getattr(inner, "model", None)
    base_url = getattr(inner, "base_url", None)
    if type(inner).__name__ == "ChatOllama":
        base_url = ollama_base_url(base_url)
    return (model if isinstance(model, str) else None), (base_url if isinstance(base_url, str) else None)


def _status_code(exc: BaseException) -> int | None:
    code = getattr(exc, "status_code", None)
    if isinstance(code, int):
        return code
    response = getattr(exc, "response", None)
    code = getattr(response, "status_code", None)
    return code if isinstance(code, int) else None


def error_kind(exc: BaseException) -> str:
    """Classify an exception raised by a model client (the fallback, or an engine-served SLM): ``"unavailable"``,
    ``"timeout"``, ``"http"``, ``"malformed"`` or ``"other"``."""
    import httpx
    from langchain_core.exceptions import ModelConnectionError, ModelTimeoutError

    for err in _chain(exc):
        if isinstance(err, (httpx.TimeoutException, TimeoutError, ModelTimeoutError)):
            return "timeout"
        if isinstance(err, (httpx.ConnectError, ConnectionError, httpx.RemoteProtocolError, httpx.ReadError,
                            ModelConnectionError)):
            return "unavailable"
        http_types = ("ResponseError", "HTTPStatusError", "APIStatusError")  # ollama, httpx, openai
        if _status_code(err) is not None and any(c.__name__ in http_types for c in type(err).__mro__):
            return "http"
        if isinstance(err, (json.JSONDecodeError, httpx.DecodingError)):
            return "malformed"
    return "other"


def _chain(exc: BaseException) -> list[BaseException]:
    out: list[BaseException] = []
    cur: BaseException | None = exc
    while cur is not None and cur not in out and len(out) < 10:
        out.append(cur)
        cur = cur.__cause__ or cur.__context__
    return out


def is_transient(exc: BaseException) -> bool:
    """Whether a retry might succeed: connection errors, timeouts, HTTP 429/5xx, dropped or malformed replies."""
    if isinstance(exc, SLMRouterError) and not isinstance(exc, FallbackError):
        return False
    kind = error_kind(exc)
    if kind == "http":
        code = next((c for c in map(_status_code, _chain(exc)) if c is not None), 0)
        return code == 429 or code >= 500
    return kind in ("unavailable", "timeout", "malformed")


def translate_error(exc: BaseException, fallback: Any) -> BaseException:
    """The typed :class:`FallbackError` for an exception raised by ``fallback`` (others pass through)."""
    if isinstance(exc, SLMRouterError):
        return exc
    if isinstance(exc, (KeyboardInterrupt, SystemExit, MemoryError)):
        return exc
    model, base_url = _where(fallback)
    name = fallback_name(fallback)
    kind = error_kind(exc)
    detail = f"{type(exc).__name__}: {exc}".strip()
    is_ollama = type(unwrap_fallback(fallback)).__name__ == "ChatOllama"
    degrade = "Or pass on_fallback_error='return_slm' to get the SLM's answer, marked low_confidence, instead."
    if kind == "unavailable":
        if is_ollama:
            msg = (
                f"The fallback {name} is unreachable at {base_url} ({detail}). Start Ollama with `ollama serve` and "
                f"pull the model with `ollama pull {model}`, or point the router at your server with "
                f"default_fallback(base_url=...) or the OLLAMA_HOST environment variable. {degrade}"
            )
        else:
            msg = f"The fallback {name} is unreachable ({detail}). {degrade}"
        err: FallbackError = FallbackUnavailableError(msg)
    elif kind == "timeout":
        err = FallbackTimeoutError(
            f"The fallback {name}{' at ' + base_url if base_url else ''} timed out ({detail}). Raise its timeout "
            f"(default_fallback(timeout=...)) or check the server's load. {degrade}"
        )
    elif kind == "http":
        code = next((c for c in map(_status_code, _chain(exc)) if c is not None), None)
        hint = f" Pull the model with `ollama pull {model}`." if is_ollama and code == 404 else ""
        err = FallbackError(f"The fallback {name} answered HTTP {code}: {exc}.{hint} {degrade}")
    elif kind == "malformed":
        err = FallbackError(f"The fallback {name} sent a malformed response ({detail}). {degrade}")
    else:
        err = FallbackError(f"The fallback {name} failed: {detail}. {degrade}")
    err.__cause__ = exc
    return err


RETRY_INITIAL_WAIT_S = 0.25
RETRY_MAX_WAIT_S = 2.0


def backoff_s(attempt: int, initial: float = RETRY_INITIAL_WAIT_S, top: float = RETRY_MAX_WAIT_S,
              jitter: float = RETRY_INITIAL_WAIT_S / 2) -> float:
    """Seconds to wait before retry number ``attempt + 1``: exponential, capped at ``top``, plus random jitter."""
    import random

    return min(top, initial * 2**attempt) + random.uniform(0, jitter)


def should_retry(exc: BaseException, attempt: int, retries: int) -> bool:
    """Whether failure number ``attempt + 1`` (0-based ``attempt``) is retried when ``retries`` retries are allowed."""
    return attempt < retries and is_transient(exc)


class StreamRetry:
    """The retry and merge state of one streamed fallback answer, without I/O, so that the sync and async
    streaming loops are the same few lines: :meth:`add` each chunk (merged into :attr:`message`), and after a
    failure :meth:`wait_s` says how long to wait before streaming again, or ``None`` when the failure is final (a
    chunk was already sent, the error is not transient, or no retry is left)."""

    def __init__(self, retries: int) -> None:
        self.retries = retries
        self.attempt = 0
        self.merged: Any = None

    def add(self, chunk: Any) -> Any:
        """Merge ``chunk`` into the answer; returns it."""
        self.merged = chunk if self.merged is None else self.merged + chunk
        return chunk

    def wait_s(self, exc: BaseException) -> float | None:
        """Seconds to wait before the next attempt after ``exc``; ``None``: do not retry."""
        if self.merged is not None or not should_retry(exc, self.attempt, self.retries):
            return None
        wait = backoff_s(self.attempt)
        self.attempt += 1
        return wait

    @property
    def message(self) -> Any:
        """The merged answer (an empty ``AIMessage`` when the stream sent nothing)."""
        from langchain_core.messages import AIMessage

        return self.merged if self.merged is not None else AIMessage(content="")


class _TransientRetry(RunnableRetry):  # type: ignore[misc]
    """LangChain's ``RunnableRetry`` that retries only failures :func:`is_transient` calls transient.

    ``invoke``/``stream`` use LangChain's tenacity loop unchanged. Batches are retried item by item: LangChain's
    own batch retry decides on the first failure of the batch alone, so one permanent error there would fail the
    whole batch; here each query's own error decides whether that query is retried, and a failed query fails
    alone.
    """

    @property
    def _kwargs_retrying(self) -> dict[str, Any]:
        from tenacity import retry_if_exception

        kwargs = dict(super()._kwargs_retrying)
        kwargs["retry"] = retry_if_exception(is_transient)
        return kwargs

    def _wait_s(self, attempt: int) -> float:
        params = self.exponential_jitter_params or {}
        return backoff_s(attempt, float(params.get("initial", RETRY_INITIAL_WAIT_S)),
                         float(params.get("max", RETRY_MAX_WAIT_S)), float(params.get("jitter", 0.0)))

    def _batch_pending(self, results: list[Any]) -> list[int]:
        return [i for i, r in enumerate(results) if isinstance(r, Exception) and is_transient(r)]

    def batch(self, inputs: list[Any], config: Any = None, *, return_exceptions: bool = False,
              **kwargs: Any) -> list[Any]:
        import time

        configs = get_config_list(config, len(inputs))
        results: list[Any] = self.bound.batch(inputs, configs, return_exceptions=True, **kwargs)
        for attempt in range(1, self.max_attempt_number):
            pending = self._batch_pending(results)
            if not pending:
                break
            time.sleep(self._wait_s(attempt - 1))
            again = self.bound.batch([inputs[i] for i in pending], [configs[i] for i in pending],
                                     return_exceptions=True, **kwargs)
            for i, r in zip(pending, again):
                results[i] = r
        return _finish_batch(results, return_exceptions)

    async def abatch(self, inputs: list[Any], config: Any = None, *, return_exceptions: bool = False,
                     **kwargs: Any) -> list[Any]:
        import asyncio

        configs = get_config_list(config, len(inputs))
        results: list[Any] = await self.bound.abatch(inputs, configs, return_exceptions=True, **kwargs)
        for attempt in range(1, self.max_attempt_number):
            pending = self._batch_pending(results)
            if not pending:
                break
            await asyncio.sleep(self._wait_s(attempt - 1))
            again = await self.bound.abatch([inputs[i] for i in pending], [configs[i] for i in pending],
                                            return_exceptions=True, **kwargs)
            for i, r in zip(pending, again):
                results[i] = r
        return _finish_batch(results, return_exceptions)


def _finish_batch(results: list[Any], return_exceptions: bool) -> list[Any]:
    if not return_exceptions:
        for r in results:
            if isinstance(r, Exception):
                raise r
    return results


def with_fallback_retry(fallback: Any, attempts: int, *, initial_wait: float = RETRY_INITIAL_WAIT_S,
                        max_wait: float = RETRY_MAX_WAIT_S) -> Any:
    """``fallback`` retried up to ``attempts`` times in all on transient failures, with exponential back-off.

    Built on LangChain's ``RunnableRetry`` (the class behind ``Runnable.with_retry``), so batches retry only their
    failed items and ``return_exceptions`` works as in LangChain.
    """
    if attempts <= 1 or not isinstance(fallback, Runnable):
        return fallback
    return _TransientRetry(
        bound=fallback,
        kwargs={},
        config={},
        max_attempt_number=attempts,
        retry_exception_types=(Exception,),
        wait_exponential_jitter=True,
        exponential_jitter_params={"initial": initial_wait, "max": max_wait, "jitter": initial_wait / 2},
    )


__all__ = [
    "DEFAULT_FALLBACK_MODEL",
    "StreamRetry",
    "backoff_s",
    "should_retry",
    "DEFAULT_OLLAMA_HOST",
    "default_fallback",
    "fallback_name",
    "is_transient",
    "ollama_base_url",
    "translate_error",
    "unwrap_fallback",
    "with_fallback_retry",
]
