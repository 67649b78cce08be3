"""The ASGI app: FastAPI routes of both protocols, health and metrics, auth, body limit and error bodies."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI, Header, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from langchain_slm_router import __version__
from langchain_slm_router.errors import SLMRouterError
from langchain_slm_router.router import SLMRouter
from langchain_slm_router.server import ollama_api, openai_api
from langchain_slm_router.server.errors import RequestTooLargeError, http_status, public_message
from langchain_slm_router.server.service import RouterService
from langchain_slm_router.server.settings import ServerSettings
from langchain_slm_router.telemetry import tracer_for

log = logging.getLogger("langchain_slm_router.server")


def _protocol(path: str) -> str:
    if path.startswith("/v1/"):
        return "openai"
    if path.startswith("/api/"):
        return "ollama"
    return "server"


def error_response(path: str, status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """An error in the body format of the protocol the path belongs to."""
    if _protocol(path) == "openai":
        return JSONResponse(openai_api.openai_error(status, message), status_code=status, headers=headers)
    return JSONResponse({"error": message}, status_code=status, headers=headers)


class _BodyLimit:
    """Pure ASGI middleware: a body over ``max_bytes`` (declared or streamed) is answered 413 before parsing."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._reject(scope, receive, send)
            return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise RequestTooLargeError(self._message())
            return message

        await self.app(scope, limited, send)

    def _message(self) -> str:
        return f"The request body is over {self.max_bytes:,} bytes (max_body_bytes)."

    async def _reject(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = error_response(scope["path"], 413, self._message(), headers={"Connection": "close"})
        await response(scope, receive, send)


class _RequestMetrics:
    """Pure ASGI middleware: counts every request by protocol, endpoint and status."""

    def __init__(self, app: ASGIApp, service: RouterService) -> None:
        self.app, self.service = app, service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500

        async def watch(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, watch)
        finally:
            path = scope["path"]
            route = scope.get("route")
            endpoint = getattr(route, "path", None) or ("unknown" if status == 404 else path)
            self.service.metrics.requests.labels(_protocol(path), endpoint, str(status)).inc()


class _TraceContext:
    """Pure ASGI middleware: with a tracer provider set, the request's W3C ``traceparent``/``tracestate`` (and
    ``baggage``) become the current context, so the router's query span joins the caller's trace. Without one it
    passes the request through untouched."""

    def __init__(self, app: ASGIApp, service: RouterService) -> None:
        self.app, self.service = app, service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or tracer_for(self.service.router.tracer_provider) is None:
            await self.app(scope, receive, send)
            return
        from opentelemetry import context, propagate

        carrier = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope.get("headers") or []}
        token = context.attach(propagate.extract(carrier))
        try:
            await self.app(scope, receive, send)
        finally:
            context.detach(token)


def create_app(router: SLMRouter, settings: ServerSettings | None = None, *,
               service: RouterService | None = None) -> FastAPI:
    """The FastAPI app serving ``router`` over the OpenAI and Ollama protocols.

    The SLM is loaded at startup (``/readyz`` answers 503 until then); on shutdown new requests get 503 and
    in-flight ones finish.
    """
    settings = settings or ServerSettings()
    service = service or RouterService(router, settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        service.draining = False
        await asyncio.to_thread(service.load)
        yield
        service.draining = True

    async def require_key(authorization: str | None = Header(default=None),
                          x_api_key: str | None = Header(default=None)) -> None:
        service.check_key(authorization, x_api_key)

    app = FastAPI(title="slm-router", version=__version__, lifespan=lifespan,
                  description="The SLM router behind the OpenAI and Ollama HTTP protocols.")
    app.state.service = service
    app.state.started = time.time()
    app.include_router(openai_api.router, dependencies=[Depends(require_key)])
    app.include_router(ollama_api.router, dependencies=[Depends(require_key)])

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        """Liveness: the process answers."""
        return {"status": "ok"}

    @app.get("/readyz", response_model=None)
    async def readyz() -> Any:
        """Readiness: the models are loaded and the server is not shutting down."""
        if service.ready and not service.draining:
            return {"status": "ready", "router": router.display_name}
        state = "shutting down" if service.draining else "loading"
        return JSONResponse({"status": state}, status_code=503)

    @app.get("/metrics", dependencies=[Depends(require_key)])
    async def metrics() -> Response:
        data, content_type = service.metrics.render()
        return Response(data, media_type=content_type)

    @app.get("/v1/router/stats", dependencies=[Depends(require_key)])
    async def router_stats() -> dict[str, Any]:
        """The router's running totals and the estimated savings (:meth:`SLMRouter.stats`) as JSON."""
        return router.stats().model_dump(mode="json")

    @app.get("/", dependencies=[Depends(require_key)])
    async def root() -> PlainTextResponse:
        return PlainTextResponse("Ollama is running")  # what Ollama clients probe for

    @app.exception_handler(SLMRouterError)
    async def router_error(request: Request, exc: SLMRouterError) -> JSONResponse:
        status = http_status(exc)
        service.metrics.observe_error(exc)
        headers = {"Retry-After": "1"} if status in (429, 503) else None
        if status >= 500:
            log.warning("%s %s -> %d %s: %s", request.method, request.url.path, status, type(exc).__name__, exc)
        return error_response(request.url.path, status, public_message(exc), headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_body(request: Request, exc: RequestValidationError) -> JSONResponse:
        service.metrics.errors.labels("RequestValidationError").inc()
        details = "; ".join(f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}" for e in exc.errors())
        return error_response(request.url.path, 400, f"Invalid request body: {details}")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = "404 page not found" if exc.status_code == 404 else str(exc.detail)
        return error_response(request.url.path, exc.status_code, message)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        service.metrics.observe_error(exc)
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return error_response(request.url.path, 500, public_message(exc))

    app.add_middleware(_BodyLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(_RequestMetrics, service=service)
    app.add_middleware(_TraceContext, service=service)
    return app


__all__ = ["create_app", "error_response"]
