"""A local engine server backed by real models, speaking Ollama's and OpenAI's protocols, for tests and benchmarks.

It serves any :class:`~langchain_slm_router.slm.SLMBackend` (the in-process :class:`~langchain_slm_router.slm.LocalSLM`
by default; a llama.cpp backend plugs in the same way) over the two protocols engines speak:

**Ollama** (what ``ChatOllama`` in langchain-ollama and LlamaIndex's ``Ollama`` use):

* ``GET /`` and ``GET /api/version``; ``GET /api/tags`` (installed models) and ``POST /api/show`` (model details);
* ``POST /api/chat``, streaming NDJSON (default) or one JSON object (``"stream": false``), with ``done_reason``,
  ``prompt_eval_count`` and ``eval_count``; ``options.num_predict`` and ``options.temperature`` are honoured; an
  unknown model gets HTTP 404 with Ollama's error text;
* ``"logprobs": true`` and ``"top_logprobs": k`` (0-20) add Ollama's ``logprobs`` field: a list with one entry per
  answer token, ``{"token", "logprob", "bytes", "top_logprobs": [{"token", "logprob", "bytes"}, ...]}``, on the one
  JSON object, or on each streamed record for the tokens it carries (the layout of Ollama's ``api.Logprob`` and of
  the ``ollama`` client's ``Logprob``/``TokenLogprob`` types).

**OpenAI** (what ``ChatOpenAI``, the ``openai`` client and vLLM/llama.cpp users speak):

* ``GET /v1/models``;
* ``POST /v1/chat/completions``, one ``chat.completion`` or (``"stream": true``) server-sent ``chat.completion.chunk``
  events ending with ``data: [DONE]``; ``max_tokens``/``max_completion_tokens``, ``temperature``, ``logprobs``,
  ``top_logprobs`` and ``stream_options.include_usage`` are honoured; ``choices[0].logprobs.content`` holds the
  per-token entries in the same layout as above; a whole reply carries OpenAI's ``openai-processing-ms`` header
  (the server's own time).

Log-probabilities are the model's own: for a :class:`LocalSLM` the answer is generated as in process (greedy by
default, so the same text) and the prompt plus answer are then scored in one forward pass for the top-k
alternatives. A backend whose :class:`~langchain_slm_router.slm.SLMGeneration` carries ``top_logprobs`` (an engine
backend) serves those.

With ``max_batch > 1`` the server answers requests that arrive together in one ``generate_batch`` call (a padded
batch for :class:`LocalSLM`), the way engines batch their users on one accelerator.

Faults can be switched on to test clients (:meth:`OllamaProtocolServer.set_fault`), on both protocols:
``"drop"`` (close the connection without a reply), ``"slow"`` (wait before answering), ``"http_error"`` (answer an
HTTP error), ``"malformed"`` (a stream with a broken line), ``"disconnect"`` (send the first token, then close the
connection mid-answer), ``"no_logprobs"`` (answer without log-probabilities, like a server that ignores the option),
each for all requests or only the next ``times`` ones.

Run it by hand: ``python -m langchain_slm_router.engine_server --port 11434``, then
``ChatOllama(model="smollm2", base_url="http://127.0.0.1:11434", logprobs=True, top_logprobs=5)`` or
``ChatOpenAI(model="smollm2", base_url="http://127.0.0.1:11434/v1", api_key="-", logprobs=True, top_logprobs=5)``.
"""

from __future__ import annotations

import argparse
import json
import math
import select
import socket
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

from langchain_slm_router.slm import LocalSLM, SLMBackend, SLMGeneration

FaultKind = Literal["drop", "slow", "http_error", "malformed", "disconnect", "no_logprobs"]
MAX_TOP_LOGPROBS = 20
"""The most alternatives per token either protocol returns (Ollama and OpenAI both cap ``top_logprobs`` at 20)."""


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


# ---------------------------------------------------------------------------------------------------- answers
@dataclass
class TokenLogprob:
    """One answer token as both protocols report it: its text, log-probability and top alternatives."""

    piece: str
    """The text this token adds to the answer (what a streamed record carries)."""
    token: str
    """The token's own text (``tokenizer.decode([id])``)."""
    logprob: float
    top: list[tuple[str, float]] = field(default_factory=list)
    """The most likely tokens at this position, best first, with their log-probabilities."""

    def entry(self, k: int) -> dict[str, Any]:
        """The protocol's ``{"token", "logprob", "bytes", "top_logprobs"}`` entry with ``k`` alternatives."""
        return {
            "token": self.token, "logprob": self.logprob, "bytes": list(self.token.encode("utf-8")),
            "top_logprobs": [{"token": t, "logprob": lp, "bytes": list(t.encode("utf-8"))} for t, lp in self.top[:k]],
        }


@dataclass
class Answer:
    """A whole answer with its tokens, as the server sends it."""

    text: str
    tokens: list[TokenLogprob] | None
    """Per-token log-probabilities (``None`` when the backend cannot give them)."""
    input_tokens: int
    output_tokens: int
    finished: bool

    def pieces(self) -> list[str]:
        """Streamed text pieces that add up to the answer."""
        if self.tokens:
            return [t.piece for t in self.tokens if t.piece]
        words = self.text.split(" ")
        return [w if i == 0 else " " + w for i, w in enumerate(words) if w or i == 0]


def score_local(slm: LocalSLM, messages: Sequence[Mapping[str, str]], token_ids: Sequence[int],
                k: int = MAX_TOP_LOGPROBS) -> list[TokenLogprob]:
    """Log-probability and top-``k`` alternatives of each answer token, from one forward pass of ``slm``'s model
    over the prompt and the answer (the distributions the model generated the answer from)."""
    import torch

    loaded = slm.load()
    tok = loaded.tokenizer
    prompt, _ = slm.encode(messages)
    if not token_ids:
        return []
    ids = torch.tensor([list(prompt) + list(token_ids)], device=slm.device)
    with loaded.lock, torch.inference_mode():
        logits = loaded.model(input_ids=ids).logits[0, len(prompt) - 1 : -1].float()
    logp = torch.log_softmax(logits, dim=-1)
    top_lp, top_ids = logp.topk(max(1, k), dim=-1)
    chosen = logp.gather(-1, torch.tensor(list(token_ids), device=logp.device).unsqueeze(-1)).squeeze(-1).tolist()
    out: list[TokenLogprob] = []
    text_so_far = ""
    for i, tid in enumerate(token_ids):
        text = tok.decode(list(token_ids[: i + 1]), skip_special_tokens=True)
        piece, text_so_far = text[len(text_so_far):], text
        alts = [(tok.decode([a]), float(lp)) for a, lp in zip(top_ids[i].tolist(), top_lp[i].tolist())]
        out.append(TokenLogprob(piece=piece, token=tok.decode([tid]), logprob=float(chosen[i]), top=alts))
    return out


def answer(slm: SLMBackend, messages: Sequence[Mapping[str, str]], *, logprobs: bool,
           generate: Callable[[SLMBackend, Sequence[Mapping[str, str]]], SLMGeneration] | None = None) -> Answer:
    """Answer ``messages`` with ``slm``; with ``logprobs``, each token's log-probability and top alternatives.

    ``generate(slm, messages)`` produces the generation (default ``slm.generate``; the server's batcher).
    """
    gen: SLMGeneration = generate(slm, messages) if generate is not None else slm.generate(messages)
    tokens: list[TokenLogprob] | None = None
    if logprobs and isinstance(slm, LocalSLM):
        tokens = score_local(slm, messages, gen.token_ids)
    elif logprobs and gen.top_logprobs is not None:
        tokens = []
        for p, top in zip(gen.token_probs, gen.top_logprobs):
            ranked = sorted(top.items(), key=lambda kv: -kv[1])
            lp = math.log(max(p, 1e-300))
            chosen = min(ranked, key=lambda kv: abs(kv[1] - lp))[0] if ranked else ""
            tokens.append(TokenLogprob(piece=chosen, token=chosen, logprob=lp, top=ranked))
    return Answer(text=gen.text, tokens=tokens, input_tokens=gen.input_tokens, output_tokens=gen.output_tokens,
                  finished=gen.finished)


class Batcher:
    """Answers requests that arrive together with one ``generate_batch`` call, as engines batch their users.

    A request waits at most ``window_s`` for others; up to ``max_batch`` requests for the same backend settings go
    into one batch. One worker thread runs the batches, one at a time.
    """

    def __init__(self, max_batch: int, window_s: float = 0.005) -> None:
        self.max_batch, self.window_s = max_batch, window_s
        self._pending: list[tuple[tuple[Any, ...], SLMBackend, Sequence[Mapping[str, str]], Future]] = []
        self._ready = threading.Condition()
        self._closed = False
        self.batch_sizes: list[int] = []
        """Size of every batch run (for benchmarks)."""
        self._thread = threading.Thread(target=self._run, name="engine-batcher", daemon=True)
        self._thread.start()

    def __call__(self, slm: SLMBackend, messages: Sequence[Mapping[str, str]]) -> SLMGeneration:
        key = (type(slm), slm.model_dump_json(exclude={"chat_model", "tokenizer"}))
        future: Future = Future()
        with self._ready:
            self._pending.append((key, slm, messages, future))
            self._ready.notify()
        out = future.result()
        if isinstance(out, Exception):
            raise out
        return out

    def close(self) -> None:
        with self._ready:
            self._closed = True
            self._ready.notify()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while True:
            with self._ready:
                while not self._pending and not self._closed:
                    self._ready.wait()
                if self._closed:
                    return
            time.sleep(self.window_s)  # let the requests that arrive together gather
            with self._ready:
                key = self._pending[0][0]
                batch = [p for p in self._pending if p[0] == key][: self.max_batch]
                self._pending = [p for p in self._pending if all(p is not b for b in batch)]
            self.batch_sizes.append(len(batch))
            try:
                outs: list[Any] = batch[0][1].generate_batch([b[2] for b in batch])
            except Exception as exc:  # noqa: BLE001 - handed to every waiting request
                outs = [exc] * len(batch)
            for (_, _, _, future), out in zip(batch, outs):
                future.set_result(out)


# ---------------------------------------------------------------------------------------------------- server
class OllamaProtocolServer:
    """A local engine server on 127.0.0.1 (free port by default): Ollama's and OpenAI's protocols, real models.

    Args:
        models: model name -> the :class:`~langchain_slm_router.slm.SLMBackend` that answers for it (default:
            ``{"smollm2": LocalSLM()}``).
        host: address to bind.
        port: port to bind; 0 picks a free port.
        max_batch: answer up to this many concurrent requests in one ``generate_batch`` call (1: one by one).
            Requests that stream without logprobs are always answered one by one, token by token.

    Use as a context manager, or call :meth:`start` and :meth:`stop`. ``base_url`` is the URL to give Ollama
    clients, ``openai_base_url`` the one for OpenAI clients.
    """

    def __init__(self, models: Mapping[str, SLMBackend] | None = None, host: str = "127.0.0.1",
                 port: int = 0, max_batch: int = 1) -> None:
        self.models: dict[str, SLMBackend] = {
            _base(k): v for k, v in (models or {"smollm2": LocalSLM()}).items()
        }
        self._httpd = _QuietHTTPServer((host, port), _make_handler(self))
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None
        self._fault: _Fault | None = None
        self._lock = threading.Lock()
        self.request_count = 0
        """Number of chat requests received on either protocol (faulty ones included)."""
        self.batcher: Batcher | None = Batcher(max_batch) if max_batch > 1 else None
        self.in_flight = 0
        """Chat requests being answered now."""
        self.max_in_flight = 0
        """The most chat requests answered at once so far (how many a client had in flight)."""

    # ------------------------------------------------------------------ lifecycle
    @property
    def base_url(self) -> str:
        """The server's root URL (what Ollama clients take)."""
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def openai_base_url(self) -> str:
        """The OpenAI-protocol root (``<base_url>/v1``, what ``ChatOpenAI(base_url=...)`` takes)."""
        return f"{self.base_url}/v1"

    def start(self) -> OllamaProtocolServer:
        if self._thread is None:
            self._thread = threading.Thread(target=self._httpd.serve_forever, name="engine-server", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._httpd.server_close()
        if self.batcher is not None:
            self.batcher.close()

    def __enter__(self) -> OllamaProtocolServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ faults
    def set_fault(
        self, kind: FaultKind | None, *, times: int | None = None, delay_s: float = 5.0, status: int = 500
    ) -> None:
        """Make chat requests fail: ``kind`` for the next ``times`` requests (``None``: until cleared).

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

    def model(self, name: str) -> SLMBackend | None:
        return self.models.get(_base(name))

    def openai_models(self) -> dict[str, Any]:
        created = int(time.time())
        return {"object": "list", "data": [{"id": name.removesuffix(":latest"), "object": "model",
                                            "created": created, "owned_by": "local"} for name in self.models]}


def _messages(body: dict[str, Any]) -> list[dict[str, str]]:
    out = []
    for m in body.get("messages") or []:
        role = m.get("role", "user")
        if role not in ("system", "user", "assistant"):
            role = "user" if role != "developer" else "system"  # tool results are shown to the model as user text
        content = m.get("content") or ""
        if isinstance(content, list):  # OpenAI content parts
            content = "".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
        out.append({"role": role, "content": str(content)})
    return out


def _configured(slm: SLMBackend, max_tokens: Any, temperature: Any) -> SLMBackend:
    update: dict[str, Any] = {"overflow": "truncate"}
    if isinstance(max_tokens, int) and max_tokens > 0:
        update["max_new_tokens"] = min(max_tokens, 1024)
    if isinstance(temperature, (int, float)) and "temperature" in type(slm).model_fields:
        update["temperature"] = max(0.0, float(temperature))
    return slm.model_copy(update=update)


def _make_handler(server: OllamaProtocolServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # each streamed record leaves at once (no 40 ms Nagle/delayed-ACK stalls)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - silence default stderr log
            return

        def _send_json(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
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
                self._send_json(200, {"version": "0.13.0"})
            elif self.path == "/api/tags":
                self._send_json(200, server.tags())
            elif self.path.rstrip("/") == "/v1/models":
                self._send_json(200, server.openai_models())
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
            elif self.path in ("/api/chat", "/v1/chat/completions", "/v1/chat/completions/"):
                with server._lock:
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                try:
                    self._chat(body) if self.path == "/api/chat" else self._openai_chat(body)
                finally:
                    with server._lock:
                        server.in_flight -= 1
            else:
                self._send_json(404, {"error": "404 page not found"})

        # -------------------------------------------------------------- faults
        def _fault(self, openai: bool) -> _Fault | None | Literal["handled"]:
            """Apply the pending fault; ``"handled"`` when the request has been answered (or dropped) already."""
            fault = server._take_fault()
            if fault is None:
                return None
            if fault.kind == "drop":
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return "handled"
            if fault.kind == "slow":
                time.sleep(fault.delay_s)
                if _client_gone(self.connection):  # the client timed out: don't tie up the model
                    return "handled"
            elif fault.kind == "http_error":
                message = f"injected fault: HTTP {fault.status}"
                self._send_json(fault.status, {"error": {"message": message, "type": "server_error"}} if openai
                                else {"error": message})
                return "handled"
            return fault

        def _hang_up(self) -> None:
            """Close the connection in the middle of a reply (no terminating chunk)."""
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)

        # -------------------------------------------------------------- Ollama
        def _chat(self, body: dict[str, Any]) -> None:
            fault = self._fault(openai=False)
            if fault == "handled":
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
            slm = _configured(slm, options.get("num_predict"), options.get("temperature"))
            kind = fault.kind if fault is not None else None
            top_k = body.get("top_logprobs")
            top_k = max(0, min(int(top_k), MAX_TOP_LOGPROBS)) if isinstance(top_k, int) else 0
            want_logprobs = (bool(body.get("logprobs")) or top_k > 0) and kind != "no_logprobs"
            started = time.perf_counter_ns()
            stream = body.get("stream", True) is not False
            if not want_logprobs and stream and isinstance(slm, LocalSLM) and kind != "disconnect":
                self._chat_live(name, slm, messages, started, malformed=kind == "malformed")
                return
            ans = answer(slm, messages, logprobs=want_logprobs, generate=server.batcher)
            if not stream:
                record: dict[str, Any] = {"model": name, "created_at": _now(),
                                          "message": {"role": "assistant", "content": ans.text}}
                if ans.tokens is not None:
                    record["logprobs"] = [t.entry(top_k) for t in ans.tokens]
                record.update(self._stats(started, ans.input_tokens, ans.output_tokens, ans.finished))
                if kind == "disconnect":
                    self._partial_json(record)
                    return
                self._send_json(200, record)
                return
            self._start_chunked("application/x-ndjson")
            units: list[tuple[str, TokenLogprob | None]] = (
                [(t.piece, t) for t in ans.tokens] if ans.tokens is not None else [(p, None) for p in ans.pieces()]
            )
            for i, (piece, tok) in enumerate(units):
                rec: dict[str, Any] = {"model": name, "created_at": _now(),
                                       "message": {"role": "assistant", "content": piece}, "done": False}
                if tok is not None:
                    rec["logprobs"] = [tok.entry(top_k)]
                self._chunk(rec)
                if kind == "disconnect":
                    self._hang_up()
                    return
                if kind == "malformed" and i == 0:
                    self._write_chunk(b'{"model": "' + name.encode() + b'", "message": {"role": "assist\n')
            self._chunk({"model": name, "created_at": _now(), "message": {"role": "assistant", "content": ""},
                         **self._stats(started, ans.input_tokens, ans.output_tokens, ans.finished)})
            self._write_chunk(b"")

        def _chat_live(self, name: str, slm: LocalSLM, messages: list[dict[str, str]], started: int,
                       malformed: bool) -> None:
            """Stream text as the local model generates it (a client that hangs up stops the generation)."""
            self._start_chunked("application/x-ndjson")
            text: list[str] = []
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

        # -------------------------------------------------------------- OpenAI
        def _openai_chat(self, body: dict[str, Any]) -> None:
            fault = self._fault(openai=True)
            if fault == "handled":
                return
            name = str(body.get("model") or "")
            slm = server.model(name)
            if slm is None:
                self._send_json(404, {"error": {"message": f"The model `{name}` does not exist.",
                                                "type": "invalid_request_error", "param": "model",
                                                "code": "model_not_found"}})
                return
            messages = _messages(body)
            if not messages:
                self._send_json(400, {"error": {"message": "'messages' must be a non-empty array",
                                                "type": "invalid_request_error", "param": "messages",
                                                "code": None}})
                return
            max_tokens = body.get("max_completion_tokens") or body.get("max_tokens")
            slm = _configured(slm, max_tokens, body.get("temperature"))
            kind = fault.kind if fault is not None else None
            top_k = body.get("top_logprobs")
            top_k = max(0, min(int(top_k), MAX_TOP_LOGPROBS)) if isinstance(top_k, int) else 0
            want_logprobs = bool(body.get("logprobs")) and kind != "no_logprobs"
            started = time.perf_counter()
            ans = answer(slm, messages, logprobs=want_logprobs, generate=server.batcher)
            processing = {"openai-processing-ms": str(round((time.perf_counter() - started) * 1000.0))}
            cid, created = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time())
            finish = "stop" if ans.finished else "length"
            usage = {"prompt_tokens": ans.input_tokens, "completion_tokens": ans.output_tokens,
                     "total_tokens": ans.input_tokens + ans.output_tokens}
            model_id = name.removesuffix(":latest")
            if not body.get("stream"):
                logprobs = ({"content": [t.entry(top_k) for t in ans.tokens], "refusal": None}
                            if ans.tokens is not None else None)
                reply = {"id": cid, "object": "chat.completion", "created": created, "model": model_id,
                         "system_fingerprint": "local", "usage": usage,
                         "choices": [{"index": 0, "message": {"role": "assistant", "content": ans.text,
                                                              "refusal": None},
                                      "logprobs": logprobs, "finish_reason": finish}]}
                if kind == "disconnect":
                    self._partial_json(reply)
                    return
                self._send_json(200, reply, processing)  # the header OpenAI sends: the server's own time
                return

            def event(delta: dict[str, Any], tok: TokenLogprob | None = None, reason: str | None = None,
                      usage_: dict[str, int] | None = None) -> None:
                choices = [] if usage_ is not None else [{
                    "index": 0, "delta": delta, "finish_reason": reason,
                    "logprobs": {"content": [tok.entry(top_k)], "refusal": None} if tok is not None else None}]
                chunk = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model_id,
                         "system_fingerprint": "local", "choices": choices}
                if usage_ is not None:
                    chunk["usage"] = usage_
                self._write_chunk(b"data: " + json.dumps(chunk).encode() + b"\n\n")

            self._start_chunked("text/event-stream")
            event({"role": "assistant", "content": ""})
            units: list[tuple[str, TokenLogprob | None]] = (
                [(t.piece, t) for t in ans.tokens] if ans.tokens is not None else [(p, None) for p in ans.pieces()]
            )
            for i, (piece, tok) in enumerate(units):
                event({"content": piece}, tok)
                if kind == "disconnect":
                    self._hang_up()
                    return
                if kind == "malformed" and i == 0:
                    self._write_chunk(b'data: {"id": "' + cid.encode() + b'", "choices": [{"delta\n\n')
            event({}, reason=finish)
            if (body.get("stream_options") or {}).get("include_usage"):
                event({}, usage_=usage)
            self._write_chunk(b"data: [DONE]\n\n")
            self._write_chunk(b"")

        # -------------------------------------------------------------- transport
        def _partial_json(self, body: Any) -> None:
            """Announce a whole JSON body, send half of it, and hang up."""
            data = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data[: len(data) // 2])
            self._hang_up()

        def _start_chunked(self, content_type: str) -> None:
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()

        def _chunk(self, record: dict[str, Any]) -> None:
            self._write_chunk(json.dumps(record).encode() + b"\n")

        def _write_chunk(self, data: bytes) -> None:
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            self.wfile.flush()

    return Handler


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Serve local models over Ollama's and OpenAI's REST APIs.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=11434)
    parser.add_argument("--name", default="smollm2", help="model name clients ask for")
    parser.add_argument("--model", default=None, help="HF id, local dir or GGUF path (default: offline SmolLM2)")
    parser.add_argument("--max-new-tokens", type=int, default=256)
    parser.add_argument("--max-batch", type=int, default=1,
                        help="answer up to this many concurrent requests in one batch (default 1: one by one)")
    args = parser.parse_args(argv)
    slm = LocalSLM(model=args.model, max_new_tokens=args.max_new_tokens)
    slm.load()
    with OllamaProtocolServer({args.name: slm}, host=args.host, port=args.port, max_batch=args.max_batch) as server:
        print(f"Engine server at {server.base_url} (Ollama) and {server.openai_base_url} (OpenAI) serving "
              f"{args.name!r} ({slm.model_name}); Ctrl-C stops.", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
