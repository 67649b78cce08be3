"""What both HTTP protocols share: model names, the routing slots and their queue, routing with time bounds,
streaming with the trace known before the first byte, and the ``x-slm-router-*`` headers."""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
from pydantic import BaseModel, ValidationError
from starlette.background import BackgroundTask
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from langchain_slm_router.errors import SLMRouterError
from langchain_slm_router.router import SLMRouter, StreamPart
from langchain_slm_router.server.coalesce import CoalescedSLM, SLMBatcher
from langchain_slm_router.server.errors import (
    AuthenticationError,
    BadRequestError,
    ModelNotFoundError,
    RequestTimeoutError,
    ServerBusyError,
    ServiceUnavailableError,
)
from langchain_slm_router.server.metrics import ServerMetrics
from langchain_slm_router.server.settings import ServerSettings
from langchain_slm_router.stops import StopCutter, cut_at_stop, normalize_stop  # re-exported for the protocols
from langchain_slm_router.trace import RouteResult

_THRESHOLD_TAG = re.compile(r"^threshold-(\d*\.?\d+)$")
_OPTION_NAMES = ("threshold", "max_tokens", "temperature", "overflow")


@dataclass(frozen=True)
class RouteOptions:
    """Per-request options: the model name's configuration plus the request's own ``max_tokens``/``temperature``."""

    threshold: float | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    overflow: str | None = None
    cache: bool = True
    """False when the request opted out of the answer cache (``x-slm-router-cache: off``)."""

    def merged(self, **request: Any) -> RouteOptions:
        """These options with the request's non-``None`` values on top."""
        values = {k: getattr(self, k) for k in (*_OPTION_NAMES, "cache")}
        values.update({k: v for k, v in request.items() if v is not None})
        return RouteOptions(**values)


@dataclass
class StreamStart:
    """A stream whose start has been computed: the parts already produced, and the rest of the stream."""

    parts: list[StreamPart]
    rest: AsyncIterator[StreamPart]
    result: RouteResult | None
    """The complete trace, when it was known before the first byte (math and kept SLM answers)."""
    escalated: bool = False
    """True when the answer is the fallback's, streaming (the trace comes with the last part)."""
    started: float = field(default_factory=time.perf_counter)
    protocol: str = ""
    """``"openai"`` or ``"ollama"``: the label of the request-latency metric."""


class LeasedResponse(Response):
    """A streaming response that ends its stream's lease however the response ends: the routing slot is
    returned, the rest of the router's stream closed and the latency observed, also when the client left before
    the first byte (the body generator then never starts, so its own ``finally`` would never run)."""

    def __init__(self, inner: Response, on_close: Callable[[], Awaitable[None]]) -> None:
        self.inner = inner
        self.on_close = on_close
        self.status_code = inner.status_code
        self.raw_headers = inner.raw_headers

    @property  # type: ignore[override]
    def background(self) -> BackgroundTask | None:  # FastAPI sets the request's background tasks here
        return self.inner.background

    @background.setter
    def background(self, value: BackgroundTask | None) -> None:
        self.inner.background = value

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self.inner(scope, receive, send)
        finally:
            await self.on_close()


class RouterService:
    """The router behind the server: configured copies per model name, slots, bounds, metrics.

    Args:
        router: the :class:`SLMRouter` to serve.
        settings: the server's limits and names.
        metrics: where to count (a fresh :class:`ServerMetrics` by default).
    """

    def __init__(self, router: SLMRouter, settings: ServerSettings, metrics: ServerMetrics | None = None) -> None:
        self.router = router
        self.settings = settings
        self.metrics = metrics or ServerMetrics()
        self.metrics.watch_router(router.stats)
        self.metrics.attach_cache(lambda: self.router.answer_cache)
        self.batcher: SLMBatcher | None = None
        if settings.coalesce and router.slm is not None:
            self.batcher = SLMBatcher(settings.max_batch, settings.batch_window_ms / 1000.0,
                                      on_batch=self.metrics.observe_slm_call)
        self._routers: OrderedDict[RouteOptions, SLMRouter] = OrderedDict()
        self._slots = asyncio.Semaphore(settings.max_concurrency)
        self.active = 0
        """Requests holding a routing slot."""
        self.waiting = 0
        """Requests waiting for one."""
        self.ready = False
        """True once the models are loaded (``/readyz``)."""
        self.draining = False
        """True once shutdown began: new requests get 503, in-flight ones finish."""
        self.accepted = 0
        """Requests admitted to a routing slot or its queue (each gets an answer or an error status)."""
        self.load_error: BaseException | None = None
        """Why :meth:`load` failed, when it did (the server then does not start)."""

    # ------------------------------------------------------------------ startup
    def load(self) -> None:
        """Load the SLM (blocking; call in a worker thread), then mark the service ready."""
        try:
            if self.router.slm is not None:
                self.router.slm.load()
            if self.router.answer_cache is not None and self.router.answer_cache.semantic:
                self.router.answer_cache.embed(["warm up"])  # load the embedding model before the first request
        except BaseException as exc:
            self.load_error = exc
            raise
        self.ready = True

    # ------------------------------------------------------------------ auth
    def check_key(self, authorization: str | None, x_api_key: str | None) -> None:
        """Raise :class:`AuthenticationError` unless the request carries the configured key."""
        expected = self.settings.api_key
        if expected is None:
            return
        given = x_api_key or ""
        if authorization and authorization.lower().startswith("bearer "):
            given = authorization[7:].strip()
        if not given or not secrets.compare_digest(given.encode(), expected.get_secret_value().encode()):
            raise AuthenticationError("Missing or wrong API key: send 'Authorization: Bearer <key>'.")

    # ------------------------------------------------------------------ model names
    def model_names(self) -> list[str]:
        """The model names served (the base name and the configured ones)."""
        return [self.settings.model_name, *self.settings.models]

    def options_for(self, model: str | None) -> RouteOptions:
        """The configuration a model name selects; :class:`ModelNotFoundError` for an unknown name."""
        name = (model or self.settings.model_name).strip()
        base, _, tag = name.partition(":")
        if base == self.settings.model_name:
            if tag in ("", "latest"):
                return RouteOptions()
            match = _THRESHOLD_TAG.match(tag)
            if match:
                return RouteOptions(threshold=float(match.group(1)))
        for candidate in (name, base if tag == "latest" else None):
            if candidate is not None and candidate in self.settings.models:
                configured = self.settings.models[candidate]
                unknown = set(configured) - set(_OPTION_NAMES)
                if unknown:
                    raise BadRequestError(f"model {name!r} is configured with unknown option(s) {sorted(unknown)}")
                return RouteOptions(**configured)
        raise ModelNotFoundError(
            f"The model {name!r} does not exist here; this server serves {', '.join(map(repr, self.model_names()))} "
            f"and '{self.settings.model_name}:threshold-<t>'."
        )

    def router_for(self, options: RouteOptions) -> SLMRouter:
        """The configured router for ``options`` (cached), its SLM coalesced when batching is on."""
        cached = self._routers.get(options)
        if cached is not None:
            self._routers.move_to_end(options)
            return cached
        try:
            configured = self.router.with_options(**{k: getattr(options, k) for k in _OPTION_NAMES})
        except (TypeError, ValueError) as exc:
            raise BadRequestError(f"cannot apply the request's options: {exc}") from exc
        if not options.cache and configured.answer_cache is not None:
            configured = configured.with_options(answer_cache=None)
        if self.batcher is not None and configured.slm is not None:
            slm = CoalescedSLM.wrap(configured.slm, self.batcher,
                                    json.dumps(configured.gate.identity(), sort_keys=True))
            configured = configured.with_options(slm=slm)  # the same weights (CoalescedSLM says so): the same gate
        self._routers[options] = configured
        if len(self._routers) > 64:
            self._routers.popitem(last=False)
        return configured

    # ------------------------------------------------------------------ slots
    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold a routing slot: 503 while draining or not ready, 429 when slots and queue are full, 503 after
        ``queue_timeout_s`` in the queue."""
        await self.acquire()
        try:
            yield
        finally:
            self.release()

    async def acquire(self) -> None:
        if self.draining:
            self.metrics.rejected.labels("shutting_down").inc()
            raise ServiceUnavailableError("The server is shutting down; retry on another instance.")
        if not self.ready:
            self.metrics.rejected.labels("not_ready").inc()
            raise ServiceUnavailableError("The server is still loading its models; retry shortly (see /readyz).")
        s = self.settings
        if self.active + self.waiting >= s.max_concurrency + s.max_queue:
            self.metrics.rejected.labels("queue_full").inc()
            raise ServerBusyError(
                f"The server is busy: {self.active} requests are being routed and {self.waiting} are waiting "
                f"(max_concurrency={s.max_concurrency}, max_queue={s.max_queue}); retry later."
            )
        self.waiting += 1
        self.accepted += 1
        self.metrics.queued.set(self.waiting)
        try:
            await asyncio.wait_for(self._slots.acquire(), s.queue_timeout_s)
        except (asyncio.TimeoutError, TimeoutError):
            self.metrics.rejected.labels("queue_timeout").inc()
            raise ServiceUnavailableError(
                f"The request waited {s.queue_timeout_s:g} s for a routing slot (queue_timeout_s); retry later."
            ) from None
        finally:
            self.waiting -= 1
            self.metrics.queued.set(self.waiting)
        self.active += 1
        self.metrics.in_flight.set(self.active)

    def release(self) -> None:
        self.active -= 1
        self.metrics.in_flight.set(self.active)
        self._slots.release()

    # ------------------------------------------------------------------ routing
    async def answer(self, router: SLMRouter, messages: Sequence[Any], fallback: Any | None = None) -> RouteResult:
        """Route one conversation within ``request_timeout_s``."""
        try:
            result = await asyncio.wait_for(router.aroute(list(messages), fallback=fallback),
                                            self.settings.request_timeout_s)
        except (asyncio.TimeoutError, TimeoutError) as exc:
            if isinstance(exc, SLMRouterError):  # the router's own typed timeout (fallback, math)
                raise
            raise RequestTimeoutError(self._timeout_message()) from None
        self.observe(result)
        return result

    async def open_stream(self, router: SLMRouter, messages: Sequence[Any], fallback: Any | None,
                          protocol: str) -> StreamStart:
        """Take a routing slot and start the stream (:meth:`start_stream`); the slot is returned at once when the
        start fails, else by :meth:`stream_response`'s response when it ends."""
        await self.acquire()
        try:
            start = await self.start_stream(router, messages, fallback)
        except BaseException:
            self.release()
            raise
        start.protocol = protocol
        return start

    def stream_response(self, start: StreamStart, response: Response) -> LeasedResponse:
        """``response`` (streaming ``start``) that returns the slot of :meth:`open_stream` however it ends."""
        released = False

        async def close() -> None:
            nonlocal released
            if released:
                return
            released = True
            self.release()
            self.metrics.request_latency.labels(start.protocol).observe(time.perf_counter() - start.started)
            with anyio.CancelScope(shield=True):  # the response may end by cancellation (client gone)
                await start.rest.aclose()

        return LeasedResponse(response, close)

    async def start_stream(self, router: SLMRouter, messages: Sequence[Any], fallback: Any | None = None) -> StreamStart:
        """Start streaming one answer: run until the first byte can be sent (the whole answer for local stages,
        the fallback's first chunk when escalated), within ``request_timeout_s``."""
        stream = router.astream(list(messages), fallback=fallback)
        parts: list[StreamPart] = []

        async def head() -> None:
            async for part in stream:
                parts.append(part)
                if part.result is not None or part.chunk is not None:
                    return

        try:
            await asyncio.wait_for(head(), self.settings.request_timeout_s)
        except (asyncio.TimeoutError, TimeoutError) as exc:
            await stream.aclose()
            if isinstance(exc, SLMRouterError):
                raise
            raise RequestTimeoutError(self._timeout_message()) from None
        except BaseException:
            await stream.aclose()
            raise
        last = parts[-1] if parts else None
        result = last.result if last is not None else None
        if result is not None:
            self.observe(result)
        return StreamStart(parts=parts, rest=stream, result=result,
                           escalated=last is not None and last.chunk is not None)

    def observe(self, result: RouteResult) -> None:
        self.metrics.observe_result(result)
        if self.batcher is None and result.latency_ms.get("slm"):
            tokens = int(result.usage.get("slm_output_tokens", 0))
            self.metrics.observe_slm_call(1, [], 0.0)
            self.metrics.slm_tokens_per_s.set(tokens / (result.latency_ms["slm"] / 1000.0))

    def _timeout_message(self) -> str:
        return (f"The request took longer than {self.settings.request_timeout_s:g} s (request_timeout_s); "
                "it was stopped.")


async def parse_body(request: Any, model: type[BaseModel]) -> Any:
    """The JSON body of ``request`` as ``model``, whatever its Content-Type (``curl -d`` sends a form type, and
    Ollama accepts it); a body that is not such JSON is a :class:`BadRequestError`."""
    raw = await request.body()
    try:
        return model.model_validate_json(raw or b"{}")
    except ValidationError as exc:
        details = "; ".join(f"{'.'.join(str(p) for p in e.get('loc', ())) or 'body'}: {e.get('msg')}"
                            for e in exc.errors())
        raise BadRequestError(f"Invalid request body: {details}") from None


def trace_headers(result: RouteResult | None, router: SLMRouter, *, escalated: bool = False) -> dict[str, str]:
    """The ``x-slm-router-*`` headers of an answer (see docs/server.md for each)."""
    headers = {"x-slm-router-router": _header_safe(router.display_name)}
    if result is None:
        if escalated:
            headers.update({"x-slm-router-stage": "llm", "x-slm-router-fallback-tried": "true"})
        return headers
    headers["x-slm-router-stage"] = result.stage
    headers["x-slm-router-fallback-tried"] = str(result.fallback_tried).lower()
    headers["x-slm-router-low-confidence"] = str(result.low_confidence).lower()
    headers["x-slm-router-reason"] = _header_safe(result.reason)
    headers["x-slm-router-latency-ms"] = ";".join(f"{k}={v:.1f}" for k, v in result.latency_ms.items())
    if result.stage == "cache":
        headers["x-slm-router-cache"] = (f"{result.cache_match};similarity={result.cache_similarity:.4f};"
                                         f"age-s={result.cache_age_s:.1f};stage={result.cached_stage}")
    if result.signals is not None:
        headers["x-slm-router-mean-prob"] = f"{result.signals.mean_prob:.4f}"
    if result.threshold is not None:
        headers["x-slm-router-threshold"] = f"{result.threshold:g}"
    if result.p_correct is not None:
        headers["x-slm-router-p-correct"] = f"{result.p_correct:.4f}"
    return headers


def finish_reason(result: RouteResult | None, router: SLMRouter, stopped: bool) -> str:
    """``"length"`` when the answer was cut by a token bound (the SLM's ``max_new_tokens``, or the fallback said
    so), else ``"stop"`` (a stop sequence cut it, or the model ended it): OpenAI's ``finish_reason`` and Ollama's
    ``done_reason``."""
    if stopped or result is None:
        return "stop"
    if result.stage == "slm" and router.slm is not None and \
            int(result.usage.get("slm_output_tokens", 0)) >= router.slm.max_new_tokens:
        return "length"
    if result.stage == "llm" and result.llm_message is not None:
        meta = getattr(result.llm_message, "response_metadata", {}) or {}
        if meta.get("done_reason") == "length" or meta.get("finish_reason") == "length":
            return "length"
    return "stop"


_CACHE_OFF = {"off", "no", "false", "0", "bypass", "no-cache", "no-store"}


def cache_allowed(headers: Any) -> bool | None:
    """``False`` when a request opts out of the answer cache: ``x-slm-router-cache: off`` (or ``bypass``, ``no``,
    ``false``, ``0``), or ``Cache-Control: no-cache`` / ``no-store``; ``None`` (the server's setting) otherwise."""
    value = (headers.get("x-slm-router-cache") or "").strip().lower()
    control = {part.strip().lower() for part in (headers.get("cache-control") or "").split(",")}
    return False if value in _CACHE_OFF or control & {"no-cache", "no-store"} else None


def _header_safe(text: str) -> str:
    return text.encode("ascii", "replace").decode("ascii").replace("\r", " ").replace("\n", " ")[:300]


def bound_fallback(router: SLMRouter, stops: Sequence[str]) -> Any | None:
    """The router's fallback with the request's stop sequences bound (``None``: the router's own)."""
    if not stops or router.fallback is None or not hasattr(router.fallback, "bind"):
        return None
    return router.fallback.bind(stop=list(stops))


__all__ = [
    "LeasedResponse",
    "RouteOptions",
    "RouterService",
    "StopCutter",
    "StreamStart",
    "bound_fallback",
    "cache_allowed",
    "cut_at_stop",
    "finish_reason",
    "normalize_stop",
    "parse_body",
    "trace_headers",
]
