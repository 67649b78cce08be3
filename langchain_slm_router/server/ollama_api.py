"""The Ollama protocol: ``POST /api/chat`` and ``POST /api/generate`` (NDJSON streaming by default, or one JSON
object with ``"stream": false``), ``GET /api/tags``, ``POST /api/show``, ``GET /api/version``.

Answers carry the route trace in the ``slm_router`` field (of the final record when streaming) and in
``x-slm-router-*`` headers; errors are Ollama's ``{"error": "<message>"}``. ``options.num_predict``,
``options.temperature`` and ``options.stop`` (or a top-level ``stop``) are honoured.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from datetime import datetime, timezone
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from langchain_slm_router.router import SLMRouter
from langchain_slm_router.server.errors import http_status, public_message
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

OLLAMA_VERSION = "0.6.0"
"""The Ollama API version reported by ``/api/version`` (the protocol subset this server speaks)."""


class OllamaChatRequest(BaseModel):
    """The body of ``POST /api/chat``."""

    model_config = ConfigDict(extra="allow")

    model: str
    messages: list[dict[str, Any]] = Field(default_factory=list)
    stream: bool = True
    options: dict[str, Any] | None = None
    stop: str | list[str] | None = None
    tools: list[dict[str, Any]] | None = None


class OllamaGenerateRequest(BaseModel):
    """The body of ``POST /api/generate``."""

    model_config = ConfigDict(extra="allow")

    model: str
    prompt: str = ""
    system: str | None = None
    images: list[str] | None = None
    stream: bool = True
    options: dict[str, Any] | None = None
    stop: str | list[str] | None = None


class OllamaShowRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: str | None = None
    name: str | None = None


def _now() -> str:
    return datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")


def _service(request: Request) -> RouterService:
    return request.app.state.service


def _image_blocks(images: list[str] | None) -> list[dict[str, Any]]:
    return [{"type": "image_url", "image_url": {"url": f"data:image/png;base64,{img}"}} for img in images or []]


def _messages(raw: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Ollama messages as OpenAI-style dicts (images become image blocks, which the fallback answers)."""
    out = []
    for m in raw:
        role = str(m.get("role") or "user")
        content: Any = m.get("content") or ""
        if m.get("images"):
            content = [{"type": "text", "text": str(content)}, *_image_blocks(m["images"])]
        msg: dict[str, Any] = {"role": role if role in ("system", "user", "assistant", "tool") else "user",
                               "content": content}
        if msg["role"] == "tool":
            msg["tool_call_id"] = str(m.get("tool_call_id") or m.get("tool_name") or "tool")
        out.append(msg)
    return out


def _routed(service: RouterService, model: str, options: dict[str, Any] | None, headers: Any = None) -> SLMRouter:
    opts = options or {}
    num_predict = opts.get("num_predict")
    temperature = opts.get("temperature")
    return service.router_for(service.options_for(model).merged(
        max_tokens=int(num_predict) if isinstance(num_predict, (int, float)) and num_predict > 0 else None,
        temperature=float(temperature) if isinstance(temperature, (int, float)) else None,
        cache=cache_allowed(headers) if headers is not None else None))


def _stops(stop: Any, options: dict[str, Any] | None) -> list[str]:
    return normalize_stop(stop if stop is not None else (options or {}).get("stop"))


def _stats(result: RouteResult | None, started: float, stopped: bool, router: SLMRouter) -> dict[str, Any]:
    total = int((time.perf_counter() - started) * 1e9)
    stats: dict[str, Any] = {
        "done": True, "done_reason": finish_reason(result, router, stopped), "total_duration": total,
        "load_duration": 0,
        "prompt_eval_count": result.input_tokens if result else 0, "prompt_eval_duration": 0,
        "eval_count": result.output_tokens if result else 0, "eval_duration": total,
    }
    if result is not None:
        stats["slm_router"] = result.trace()
    return stats


async def _answer(request: Request, model: str, messages: list[dict[str, Any]], stream: bool,
                  options: dict[str, Any] | None, stop: Any, field: str) -> Any:
    """Answer one Ollama request; ``field`` is ``"message"`` (/api/chat) or ``"response"`` (/api/generate)."""
    service = _service(request)
    routed = _routed(service, model, options, request.headers)
    started = time.perf_counter()

    def record(text: str, **extra: Any) -> dict[str, Any]:
        body = {"model": model, "created_at": _now()}
        if field == "message":
            body["message"] = {"role": "assistant", "content": text}
        else:
            body["response"] = text
        return {**body, **extra}

    if not messages or not any(str(m.get("content") or "").strip() or m.get("images") for m in messages):
        # Ollama answers an empty request with a "load" record (clients use it to load a model)
        return JSONResponse({**record(""), "done": True, "done_reason": "load"})
    stops = _stops(stop, options)
    fallback = bound_fallback(routed, stops)
    if not stream:
        async with service.slot():
            result = await service.answer(routed, messages, fallback)
        text, stopped = cut_at_stop(result.answer, stops)
        service.metrics.request_latency.labels("ollama").observe(time.perf_counter() - started)
        return JSONResponse(record(text, **_stats(result, started, stopped, routed)),
                            headers=trace_headers(result, routed))

    start = await service.open_stream(routed, messages, fallback, "ollama")

    async def lines() -> AsyncIterator[bytes]:
        cutter = StopCutter(stops)
        result = start.result
        try:
            parts = list(start.parts)
            while True:
                for part in parts:
                    text = cutter.feed(part.text) if part.text else ""
                    if text:
                        yield _line(record(text, done=False))
                    if part.result is not None:
                        result = part.result
                if result is not None:
                    break
                try:
                    parts = [await start.rest.__anext__()]
                except StopAsyncIteration:
                    break
            tail = cutter.flush()
            if tail:
                yield _line(record(tail, done=False))
            if result is not None and start.result is None:
                service.observe(result)
            yield _line(record("", **_stats(result, started, cutter.hit, routed)))
        except Exception as exc:  # noqa: BLE001 - after the headers, an error is a record (as Ollama does)
            service.metrics.observe_error(exc)
            yield _line({"error": public_message(exc), "status": http_status(exc)})

    return service.stream_response(start, StreamingResponse(
        lines(), media_type="application/x-ndjson",
        headers=trace_headers(start.result, routed, escalated=start.escalated)))


def _line(record: dict[str, Any]) -> bytes:
    return json.dumps(record).encode() + b"\n"


@router.post("/api/chat", response_model=None)
async def chat(request: Request) -> Any:
    body = await parse_body(request, OllamaChatRequest)
    if body.tools:
        from langchain_slm_router.server.errors import BadRequestError

        raise BadRequestError("Tools are not supported by this server; call the fallback model directly.")
    return await _answer(request, body.model, _messages(body.messages), body.stream, body.options, body.stop,
                         "message")


@router.post("/api/generate", response_model=None)
async def generate(request: Request) -> Any:
    body = await parse_body(request, OllamaGenerateRequest)
    messages: list[dict[str, Any]] = []
    if body.system:
        messages.append({"role": "system", "content": body.system})
    if body.prompt or body.images:
        content: Any = body.prompt
        if body.images:
            content = [{"type": "text", "text": body.prompt}, *_image_blocks(body.images)]
        messages.append({"role": "user", "content": content})
    return await _answer(request, body.model, messages, body.stream, body.options, body.stop, "response")


def _describe(name: str) -> dict[str, Any]:
    return {"name": name, "model": name, "modified_at": _now(), "size": 0, "digest": "slm-router",
            "details": {"format": "router", "family": "slm-router", "families": ["slm-router"],
                        "parameter_size": "", "quantization_level": ""}}


@router.get("/api/tags")
async def tags(request: Request) -> dict[str, Any]:
    return {"models": [_describe(f"{n}:latest" if ":" not in n else n) for n in _service(request).model_names()]}


@router.post("/api/show")
async def show(request: Request) -> dict[str, Any]:
    body = await parse_body(request, OllamaShowRequest)
    service = _service(request)
    name = body.model or body.name or ""
    options = service.options_for(name)
    routed = service.router_for(options)
    return {
        "license": "", "modelfile": f"# {routed.display_name}", "template": "{{ .Prompt }}",
        "parameters": " ".join(f"{k} {v}" for k, v in vars(options).items() if v is not None),
        "details": _describe(name)["details"],
        "model_info": {"general.architecture": "slm-router", "slm_router.display_name": routed.display_name,
                       "slm_router.threshold": routed.gate.threshold},
        "capabilities": ["completion"], "modified_at": _now(),
    }


@router.get("/api/version")
async def version() -> dict[str, str]:
    return {"version": OLLAMA_VERSION}


__all__ = ["OLLAMA_VERSION", "router"]

