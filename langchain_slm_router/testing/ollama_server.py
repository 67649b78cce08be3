"""An Ollama-protocol HTTP server backed by real local models, for tests, demos and offline benchmarks.

It speaks the part of Ollama's REST API that ``ChatOllama`` (langchain-ollama) and LlamaIndex's ``Ollama`` use:

* ``GET /`` and ``GET /api/version``;
* ``GET /api/tags`` (installed models) and ``POST /api/show`` (model details);
* ``POST /api/chat``, streaming NDJSON (default) or one JSON object (``"stream": false``), with
  ``done_reason``, ``prompt_eval_count`` and ``eval_count``; ``options.num_predict`` and ``options.temperature``
  are honoured; an unknown model gets HTTP 404 with Ollama's error text.

Each model is a :class:`~langchain_slm_router.slm.LocalSLM`, so answers come from a real model. Faults can be
switched on to test clients (:meth:`OllamaProtocolServer.set_fault`): ``"drop"`` (close the connection without a
reply), ``"slow"`` (wait before answering), ``"http_error"`` (answer an HTTP error), ``"malformed"`` (a stream
with a broken line), each for all requests or only the next ``times`` ones.

Run it by hand: ``python -m langchain_slm_router.testing.ollama_server --port 11434``, then
``ChatOllama(model="smollm2", base_url="http://127.0.0.1:11434")``.
"""

from __future__ import annotations

import argparse
import json
import select
import socket
import threading
import time
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

from langchain_slm_router.slm import LocalSLM

FaultKind = Literal["drop", "slow", "http_error", "malformed"]


def _now() -> str:
    return datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")


def _base(name: str) -> str:
    return name if ":" in name else f"{name}:latest"


class _QuietHTTPServer(ThreadingHTTPServer):
    """Clients that hang up mid-answer (timeouts, cancelled streams) are normal here, not errors to print."""

    def handle_error(self, request: Any, client_address: Any) -> None:
        import sys

        if isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError, ConnectionAbortedError)):
            return
        super().handle_error(request, client_address)


def _client_gone(sock: socket.socket) -> bool:
    """True when the client has closed its side of the connection."""
    try:
        readable, _, _ = select.select([sock], [], [], 0)
        return bool(readable) and sock.recv(1, socket.MSG_PEEK) == b""
    except OSError:
        return True


class _Fault:
    def __init__(self, kind: FaultKind, times: int | None, delay_s: float, status: int) -> None:
        self.kind, self.times, self.delay_s, self.status = kind, times, delay_s, status


class OllamaProtocolServer:
    """A local Ollama-protocol server on 127.0.0.1 (free port by default) answering with real local models.

    Args:
        models: model name -> the :class:`LocalSLM` that answers for it (default: ``{"smollm2": LocalSLM()}``).
        host: address to bind.
        port: port to bind; 0 picks a free port.

    Use as a context manager, or call :meth:`start` and :meth:`stop`. ``base_url`` is the URL to give clients.
    """

    def __init__(self, models: dict[str, LocalSLM] | None = None, host: str = "127.0.0.1", port: int = 0) -> None:
        self.models = {_base(k): v for k, v in (models or {"smollm2": LocalSLM()}).items()}
        self._httpd = _QuietHTTPServer((host, port), _make_handler(self))
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None
        self._fault: _Fault | None = None
        self._lock = threading.Lock()
        self.request_count = 0
        """Number of ``/api/chat`` requests received (faulty ones included)."""

    # ------------------------------------------------------------------ lifecycle
    @property
    def base_url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> OllamaProtocolServer:
        if self._thread is None:
            self._thread = threading.Thread(target=self._httpd.serve_forever, name="ollama-protocol", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._httpd.server_close()

    def __enter__(self) -> OllamaProtocolServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ faults
    def set_fault(
        self, kind: FaultKind | None, *, times: int | None = None, delay_s: float = 5.0, status: int = 500
    ) -> None:
        """Make ``/api/chat`` fail: ``kind`` for the next ``times`` requests (``None``: until cleared).

        ``"slow"`` waits ``delay_s`` seconds before answering; ``"http_error"`` answers HTTP ``status``.
        ``set_fault(None)`` clears it.
        """
        with self._lock:
            self._fault = None if kind is None else _Fault(kind, times, delay_s, status)

    def _take_fault(self) -> _Fault | None:
        with self._lock:
            self.request_count += 1
            fault = self._fault
            if fault is None:
                return None
            if fault.times is not None:
                fault.times -= 1
                if fault.times <= 0:
                    self._fault = None
            return fault

    # ------------------------------------------------------------------ API bodies
    def tags(self) -> dict[str, Any]:
        return {"models": [self._describe(name) for name in self.models]}

    def _describe(self, name: str) -> dict[str, Any]:
        return {
            "name": name, "model": name, "modified_at": _now(), "size": 0, "digest": "local",
            "details": {"format": "gguf", "family": "llama", "families": ["llama"], "parameter_size": "135M",
                        "quantization_level": "Q4_1"},
        }

    def show(self, name: str) -> dict[str, Any] | None:
        slm = self.models.get(_base(name))
        if slm is None:
            return None
        return {
            "license": "", "modelfile": f"FROM {slm.model_name}", "parameters": f"num_predict {slm.max_new_tokens}",
            "template": "{{ .Prompt }}", "details": self._describe(_base(name))["details"],
            "model_info": {"general.architecture": "llama", "llama.context_length": slm.max_input_tokens},
            "capabilities": ["completion"], "modified_at": _now(),
        }

    def model(self, name: str) -> LocalSLM | None:
        return self.models.get(_base(name))


def _messages(body: dict[str, Any]) -> list[dict[str, str]]:
    out = []
    for m in body.get("messages") or []:
        role = m.get("role", "user")
        if role not in ("system", "user", "assistant"):
            role = "user"  # tool results are shown to the model as user text
        out.append({"role": role, "content": str(m.get("content") or "")})
    return out


def _make_handler(server: OllamaProtocolServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - silence default stderr log
            return

        def _send_json(self, status: int, body: Any) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _body(self) -> dict[str, Any]:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b"{}"
            try:
                body = json.loads(raw or b"{}")
            except ValueError:
                return {}
            return body if isinstance(body, dict) else {}

        def do_HEAD(self) -> None:  # noqa: N802
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_GET(self) -> None:  # noqa: N802
            if self.path in ("/", ""):
                data = b"Ollama is running"
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            elif self.path == "/api/version":
                self._send_json(200, {"version": "0.6.0"})
            elif self.path == "/api/tags":
                self._send_json(200, server.tags())
            else:
                self._send_json(404, {"error": "404 page not found"})

        def do_POST(self) -> None:  # noqa: N802
            body = self._body()
            if self.path == "/api/show":
                name = str(body.get("model") or body.get("name") or "")
                shown = server.show(name)
                if shown is None:
                    self._send_json(404, {"error": f"model '{name}' not found"})
                else:
                    self._send_json(200, shown)
            elif self.path == "/api/chat":
                self._chat(body)
            else:
                self._send_json(404, {"error": "404 page not found"})

        def _chat(self, body: dict[str, Any]) -> None:
            fault = server._take_fault()
            if fault is not None:
                if fault.kind == "drop":
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                if fault.kind == "slow":
                    time.sleep(fault.delay_s)
                    if _client_gone(self.connection):  # the client timed out: don't tie up the model
                        return
                elif fault.kind == "http_error":
                    self._send_json(fault.status, {"error": f"injected fault: HTTP {fault.status}"})
                    return
            name = str(body.get("model") or "")
            slm = server.model(name)
            if slm is None:
                self._send_json(404, {"error": f"model \"{name}\" not found, try pulling it first"})
                return
            messages = _messages(body)
            if not messages:  # Ollama answers an empty chat with a "loaded" record
                self._send_json(200, {"model": name, "created_at": _now(), "message": {"role": "assistant",
                                      "content": ""}, "done_reason": "load", "done": True})
                return
            options = body.get("options") or {}
            update: dict[str, Any] = {}
            if isinstance(options.get("num_predict"), int) and options["num_predict"] > 0:
                update["max_new_tokens"] = min(int(options["num_predict"]), 1024)
            if isinstance(options.get("temperature"), (int, float)):
                update["temperature"] = max(0.0, float(options["temperature"]))
            slm = slm.model_copy(update={**update, "overflow": "truncate"})
            started = time.perf_counter_ns()
            if body.get("stream", True) is False:
                gen = slm.generate(messages)
                self._send_json(200, {
                    "model": name, "created_at": _now(),
                    "message": {"role": "assistant", "content": gen.text},
                    **self._stats(started, gen.input_tokens, gen.output_tokens, gen.finished),
                })
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/x-ndjson")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            text: list[str] = []
            malformed = fault is not None and fault.kind == "malformed"
            pieces = slm.stream_text(messages)
            try:
                for piece in pieces:
                    if not piece:
                        continue
                    text.append(piece)
                    self._chunk({"model": name, "created_at": _now(),
                                 "message": {"role": "assistant", "content": piece}, "done": False})
                    if malformed and len(text) == 1:  # a record cut in the middle, then the stream goes on
                        self._write_chunk(b'{"model": "' + name.encode() + b'", "message": {"role": "assist\n')
            finally:
                pieces.close()  # stops the generation when the client hung up
            prompt_tokens = slm.count_tokens(messages)
            out_tokens = max(len(slm.loaded.tokenizer.encode("".join(text), add_special_tokens=False)), 1)
            self._chunk({"model": name, "created_at": _now(), "message": {"role": "assistant", "content": ""},
                         **self._stats(started, prompt_tokens, out_tokens, out_tokens < slm.max_new_tokens)})
            self._write_chunk(b"")

        @staticmethod
        def _stats(started_ns: int, prompt_tokens: int, out_tokens: int, finished: bool) -> dict[str, Any]:
            total = time.perf_counter_ns() - started_ns
            return {
                "done": True, "done_reason": "stop" if finished else "length", "total_duration": total,
                "load_duration": 0, "prompt_eval_count": prompt_tokens, "prompt_eval_duration": total // 4,
                "eval_count": out_tokens, "eval_duration": total - total // 4,
            }

        def _chunk(self, record: dict[str, Any]) -> None:
            self._write_chunk(json.dumps(record).encode() + b"\n")

        def _write_chunk(self, data: bytes) -> None:
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            self.wfile.flush()

    return Handler


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Serve local models over Ollama's REST API.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=11434)
    parser.add_argument("--name", default="smollm2", help="model name clients ask for")
    parser.add_argument("--model", default=None, help="HF id, local dir or GGUF path (default: offline SmolLM2)")
    parser.add_argument("--max-new-tokens", type=int, default=256)
    args = parser.parse_args(argv)
    slm = LocalSLM(model=args.model, max_new_tokens=args.max_new_tokens)
    with OllamaProtocolServer({args.name: slm}, host=args.host, port=args.port) as server:
        print(f"Ollama-protocol server at {server.base_url} serving {args.name!r} ({slm.model_name}); Ctrl-C stops.")
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
