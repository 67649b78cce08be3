"""Stateless router replicas against one engine: a local simulation of the deployment in docs/scaling.md.

Usage::

    python benchmarks/bench_scaling.py [--data-dir DIR] [--replicas 1,2,4] [--requests 48] [--concurrency 8]
                                       [--max-new-tokens 24] [--engine-batch 8]

Starts, on 127.0.0.1:

* one **engine** process: the project's engine server (Ollama protocol) on SmolLM2-135M, batching up to
  ``--engine-batch`` concurrent requests into one forward pass (as vLLM/Ollama batch their users);
* for each replica count N, **N router processes**: with ``--serve``, ``slm-router serve --config <file>`` (the
  project's HTTP server; the file's SLM is ``ChatModelSLM`` on the engine); otherwise this script's minimal replica
  (``POST /route {"query": ...}``, ``SLMRouter`` with ``ChatModelSLM(ChatOllama(<engine>, logprobs=True,
  top_logprobs=5))``), which also reports the engine's own time per answer. Both are stateless and share one gate
  configuration;
* a **load generator** in this process: ``--concurrency`` closed-loop clients (each sends its next request when the
  previous answer arrives: bounded load) spreading ``--requests`` NQ-open questions round-robin over the replicas
  (the load balancer).

Prints a Markdown table per replica count: throughput (queries/s), client-observed latency p50/p95, and the
router's own overhead per query (replica-side ``route()`` time minus the engine's ``total_duration``), p50/p95.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, max(0, math.ceil(q * len(values)) - 1))]


# ------------------------------------------------------------------------------------------------ replica
def serve_replica(port: int, engine_url: str, max_new_tokens: int, gate_json: str) -> None:
    """One stateless router replica: all it holds is configuration (engine URL, gate); no per-user state."""
    import httpx
    from langchain_core.callbacks import BaseCallbackHandler
    from langchain_ollama import ChatOllama

    from langchain_slm_router import SLMRouter
    from langchain_slm_router.slm import ChatModelSLM

    local = threading.local()

    class EngineTime(BaseCallbackHandler):
        def on_llm_end(self, response: Any, **kwargs: Any) -> None:
            info = response.generations[0][0].generation_info or {}
            local.engine_ms = info.get("total_duration", 0) / 1e6

    chat = ChatOllama(model="smollm2", base_url=engine_url, logprobs=True, top_logprobs=5, callbacks=[EngineTime()],
                      client_kwargs={"limits": httpx.Limits(max_connections=64)})
    router = SLMRouter(slm=ChatModelSLM(chat_model=chat, max_new_tokens=max_new_tokens), gate=json.loads(gate_json),
                       fallback=None)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            return

        def do_GET(self) -> None:  # noqa: N802
            self._send({"ok": True})

        def do_POST(self) -> None:  # noqa: N802
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
            local.engine_ms = 0.0
            t0 = time.perf_counter()
            result = router.route(body["query"])
            route_ms = (time.perf_counter() - t0) * 1000.0
            self._send({"answer": result.answer, "stage": result.stage, "route_ms": route_ms,
                        "engine_ms": local.engine_ms})

        def _send(self, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    httpd.daemon_threads = True
    httpd.serve_forever()


# ------------------------------------------------------------------------------------------------ driver
def start(cmd: list[str], ready_url: str, timeout_s: float = 120.0) -> subprocess.Popen:
    """Start a server process and wait until ``ready_url`` answers 200."""
    from langchain_slm_router.testing.processes import start_server_process

    return start_server_process(cmd, ready_url, timeout_s=timeout_s, env={**os.environ, "PYTHONPATH": str(REPO)})


def stop(procs: list[subprocess.Popen]) -> None:
    for proc in procs:
        proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def load(urls: list[str], questions: list[str], concurrency: int,
         serve: bool = False) -> tuple[float, list[float], list[dict[str, Any]]]:
    """Closed-loop load: ``concurrency`` clients, round-robin over ``urls``; returns wall s, latencies, replies.

    ``serve``: the replicas are ``slm-router serve`` (OpenAI protocol); a reply is then the ``slm_router`` trace.
    """
    import httpx

    todo = iter(questions)
    pick = itertools.cycle(urls)
    lock = threading.Lock()
    latencies: list[float] = []
    replies: list[dict[str, Any]] = []

    def client() -> None:
        with httpx.Client(timeout=300) as http:
            while True:
                with lock:
                    question = next(todo, None)
                    url = next(pick)
                if question is None:
                    return
                t0 = time.perf_counter()
                if serve:
                    body = {"model": "slm-router", "messages": [{"role": "user", "content": question}]}
                    reply = http.post(f"{url}/v1/chat/completions", json=body).json()["slm_router"]
                else:
                    reply = http.post(f"{url}/route", json={"query": question}).json()
                ms = (time.perf_counter() - t0) * 1000.0
                with lock:
                    latencies.append(ms)
                    replies.append(reply)

    threads = [threading.Thread(target=client) for _ in range(concurrency)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - t0, latencies, replies


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replica", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--engine", default="", help=argparse.SUPPRESS)
    parser.add_argument("--gate", default='{"gate": "threshold"}',
                        help="gate configuration every replica loads (JSON; the same file on every replica)")
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--replicas", default="1,2,4")
    parser.add_argument("--requests", type=int, default=48)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=24)
    parser.add_argument("--engine-batch", type=int, default=8)
    parser.add_argument("--serve", action="store_true",
                        help="replicas are `slm-router serve --config <file>` (the project's HTTP server) instead of "
                             "this script's minimal replica")
    args = parser.parse_args(argv)
    if args.replica:
        serve_replica(args.port, args.engine, args.max_new_tokens, args.gate)
        return 0

    from langchain_slm_router.errors import DataUnavailableError
    from langchain_slm_router.evaluation.datasets import default_data_dir, read_rows

    try:
        rows = read_rows("nq_open", args.data_dir or default_data_dir())[: args.requests]
    except DataUnavailableError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    questions = [r["question"].rstrip("?") + "?" for r in rows]
    eport = free_port()
    engine = start([sys.executable, "-m", "langchain_slm_router.testing.ollama_server", "--port", str(eport),
                    "--max-new-tokens", str(args.max_new_tokens), "--max-batch", str(args.engine_batch)],
                   f"http://127.0.0.1:{eport}/api/version")
    engine_url = f"http://127.0.0.1:{eport}"
    import tempfile

    config_file = Path(tempfile.mkdtemp(prefix="slm-router-replica-")) / "replica.json"
    config_file.write_text(json.dumps({"router": {
        "slm": {"backend": "chat_model", "max_new_tokens": args.max_new_tokens, "chat_model": {
            "provider": "ollama", "model": "smollm2", "base_url": engine_url}},
        "gate": json.loads(args.gate)}}))
    print(f"engine: project server, SmolLM2-135M, batches of up to {args.engine_batch}; {len(questions)} NQ-open "
          f"questions, {args.concurrency} closed-loop clients, max_new_tokens={args.max_new_tokens}, "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'default')}, {os.cpu_count()} CPUs, "
          f"load average before: {os.getloadavg()[0]:.2f}\n")
    kind = "`slm-router serve`" if args.serve else "minimal"
    what = "router's own work (trace total - SLM stage)" if args.serve else "router overhead"
    print(f"replicas: {kind}\n")
    print(f"| router replicas | queries/s | latency p50 ms | latency p95 ms | {what} p50 ms | "
          f"{what} p95 ms | errors |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    try:
        for n in (int(x) for x in args.replicas.split(",")):
            replicas, urls = [], []
            try:
                for _ in range(n):
                    port = free_port()
                    if args.serve:
                        cmd = [sys.executable, "-m", "langchain_slm_router.cli", "serve", "--port", str(port),
                               "--config", str(config_file), "--no-fallback"]
                        ready = f"http://127.0.0.1:{port}/readyz"
                    else:
                        cmd = [sys.executable, str(Path(__file__).resolve()), "--replica", "--port", str(port),
                               "--engine", engine_url, "--gate", args.gate, "--max-new-tokens",
                               str(args.max_new_tokens)]
                        ready = f"http://127.0.0.1:{port}/"
                    replicas.append(start(cmd, ready))
                    urls.append(f"http://127.0.0.1:{port}")
                # warm-up: connections, first call
                load(urls, questions[: 2 * n], min(args.concurrency, 2 * n), args.serve)
                wall, latencies, replies = load(urls, questions, args.concurrency, args.serve)
            finally:
                stop(replicas)
            if args.serve:  # the trace's total minus its SLM stage: the router's own work in the replica
                overhead = [r["latency_ms"]["total"] - r["latency_ms"].get("slm", 0.0) for r in replies
                            if r.get("latency_ms")]
            else:
                overhead = [r["route_ms"] - r["engine_ms"] for r in replies if r.get("engine_ms")]
            errors = len(questions) - len(overhead)
            print(f"| {n} | {len(replies) / wall:.2f} | {pct(latencies, 0.5):.0f} | {pct(latencies, 0.95):.0f} | "
                  f"{pct(overhead, 0.5):.2f} | {pct(overhead, 0.95):.2f} | {errors} |", flush=True)
    finally:
        stop([engine])
    print(f"\nload average after: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
