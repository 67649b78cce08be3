"""The OpenAI protocol: ``POST /v1/chat/completions`` (JSON or SSE) and ``GET /v1/models``.

Every answer carries the route trace in the ``slm_router`` field (of the completion, or of the last SSE chunk
before the usage chunk) and in ``x-slm-router-*`` headers. Errors use OpenAI's error body
``{"error": {"message", "type", "param", "code"}}``.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from sse_starlette import EventSourceResponse

from langchain_slm_router.router import SLMRouter
from langchain_slm_router.server.errors import BadRequestError, http_status, public_message
from langchain_slm_router.server.service import (
    RouterService,
    StopCutter,
    bound_fallback,
    cache_allowed,
    cut_at_stop,
    finish_reason,
    normalize_stop,
    parse_body,
    trace_headers,
)
from langchain_slm_router.trace import RouteResult

router = APIRouter()


class StreamOptions(BaseModel):
    include_usage: bool = False
    """Send a last chunk with the token usage of the whole answer."""


class ChatCompletionRequest(BaseModel):
    """The body of ``POST /v1/chat/completions`` (fields the router does not use are accepted and ignored)."""

    model_config = ConfigDict(extra="allow")

    model: str
    """``slm-router``, ``slm-router:threshold-<t>`` or a configured model name."""
    messages: list[dict[str, Any]] = Field(min_length=1)
    """OpenAI chat messages (text, or content parts; non-text parts send the request to the fallback)."""
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    """Bound on the SLM's answer length (the fallback keeps its own)."""
    max_completion_tokens: int | None = Field(default=None, ge=1)
    """OpenAI's newer name of ``max_tokens``."""
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    """The SLM's sampling temperature (0: greedy)."""
    stop: str | list[str] | None = None
    """Stop sequences: the answer is cut at the first one."""
    n: int | None = 1
    tools: list[dict[str, Any]] | None = None


def openai_error(status: int, message: str, code: str | None = None) -> dict[str, Any]:
    """OpenAI's error body."""
    kind = {400: "invalid_request_error", 401: "invalid_request_error", 404: "invalid_request_error",
            413: "invalid_request_error", 429: "rate_limit_error", 504: "timeout"}.get(status, "server_error")
    default_code = {401: "invalid_api_key", 404: "model_not_found", 413: "request_too_large",
                    429: "rate_limit_exceeded", 503: "service_unavailable", 504: "timeout"}.get(status)
    return {"error": {"message": message, "type": kind, "param": None, "code": code or default_code}}


def _service(request: Request) -> RouterService:
    return request.app.state.service


def _usage(result: RouteResult) -> dict[str, int]:
    return {"prompt_tokens": result.input_tokens, "completion_tokens": result.output_tokens,
            "total_tokens": result.total_tokens}


def _check(body: ChatCompletionRequest) -> None:
    if body.n not in (None, 1):
        raise BadRequestError("Only n=1 is supported: the router gives one answer per request.")
    if body.tools:
        raise BadRequestError("Tools are not supported by this server; call the fallback model directly for "
                              "tool calling.")


@router.get("/v1/models")
async def list_models(request: Request) -> dict[str, Any]:
    service = _service(request)
    created = int(request.app.state.started)
    return {"object": "list", "data": [{"id": name, "object": "model", "created": created,
                                        "owned_by": "slm-router"} for name in service.model_names()]}


@router.get("/v1/models/{model_id:path}")
async def get_model(model_id: str, request: Request) -> dict[str, Any]:
    _service(request).options_for(model_id)
    return {"id": model_id, "object": "model", "created": int(request.app.state.started), "owned_by": "slm-router"}


@router.post("/v1/chat/completions", response_model=None)
async def chat_completions(request: Request) -> Any:
    body = await parse_body(request, ChatCompletionRequest)
    _check(body)
    service = _service(request)
    options = service.options_for(body.model).merged(
        max_tokens=body.max_completion_tokens or body.max_tokens, temperature=body.temperature,
        cache=cache_allowed(request.headers))
    routed = service.router_for(options)
    stops = normalize_stop(body.stop)
    fallback = bound_fallback(routed, stops)
    completion_id = f"chatcmpl-{uuid.uuid4().hex}"
    created = int(time.time())
    if not body.stream:
        started = time.perf_counter()
        async with service.slot():
            result = await service.answer(routed, body.messages, fallback)
        text, stopped = cut_at_stop(result.answer, stops)
        service.metrics.request_latency.labels("openai").observe(time.perf_counter() - started)
        return JSONResponse({
            "id": completion_id, "object": "chat.completion", "created": created, "model": body.model,
            "system_fingerprint": None,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                         "logprobs": None, "finish_reason": finish_reason(result, routed, stopped)}],
            "usage": _usage(result),
            "slm_router": result.trace(),
        }, headers=trace_headers(result, routed))

    start = await service.open_stream(routed, body.messages, fallback, "openai")
    include_usage = bool(body.stream_options and body.stream_options.include_usage)

    def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> str:
        return json.dumps({"id": completion_id, "object": "chat.completion.chunk", "created": created,
                           "model": body.model, "system_fingerprint": None,
                           "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
                           **extra})

    async def events() -> AsyncIterator[str]:
        cutter = StopCutter(stops)
        result = start.result
        try:
            yield chunk({"role": "assistant", "content": ""})
            parts = list(start.parts)
            rest = start.rest
            while True:
                for part in parts:
                    text = cutter.feed(part.text) if part.text else ""
                    if text:
                        yield chunk({"content": text})
                    if part.result is not None:
                        result = part.result
                if result is not None:
                    break
                try:
                    parts = [await rest.__anext__()]
                except StopAsyncIteration:
                    break
            tail = cutter.flush()
            if tail:
                yield chunk({"content": tail})
            if result is None:  # pragma: no cover - the router always ends with a result
                return
            if start.result is None:
                service.observe(result)
            yield chunk({}, finish_reason(result, routed, cutter.hit), slm_router=result.trace())
            if include_usage:
                yield json.dumps({"id": completion_id, "object": "chat.completion.chunk", "created": created,
                                  "model": body.model, "system_fingerprint": None, "choices": [],
                                  "usage": _usage(result)})
            yield "[DONE]"
        except Exception as exc:  # noqa: BLE001 - after the headers, an error is an SSE event
            service.metrics.observe_error(exc)
            yield json.dumps(openai_error(http_status(exc), public_message(exc)))

    return service.stream_response(start, EventSourceResponse(
        events(), headers=trace_headers(start.result, routed, escalated=start.escalated), ping=15,
        sep="\n", shutdown_grace_period=service.settings.graceful_timeout_s,
    ))


__all__ = ["ChatCompletionRequest", "openai_error", "router"]
