"""Benchmark ``slm-router serve``: coalesced batching vs one by one, server overhead, and a bounded load test.

Usage::

    nice -n 5 python benchmarks/bench_server.py [--data-dir ../shared/data] [--concurrency 1,8,32,100]
        [--questions 40] [--max-new-tokens 16] [--load-requests 200] [--load-clients 100] [--fallback none|local]

Everything runs on this machine, on loopback: the real SmolLM2 as the SLM, the math engine, and (``--fallback
local``) the project's Ollama-protocol test server backed by the same SmolLM2 as the fallback, reached with the
real ``ChatOllama`` client. The clients are ``httpx`` async clients in this process (the server runs in a thread of
the same process, so client and server share the GIL: absolute numbers are pessimistic, the ratios are side by
side in one run).

1. **Reference**: every question once through ``SLMRouter.route`` in-process, one by one (answers, stages,
   signals, time).
2. **Overhead**: the first ``--overhead-questions`` questions one by one over HTTP (OpenAI protocol, JSON); per request, the HTTP wall time
   minus the router's own ``latency_ms.total`` from the trace; p50/p95 (target: p50 < 5 ms).
3. **Throughput**: for each concurrency c, ``max(--min-requests, c)`` requests (the questions in order, cycled; half OpenAI,
   half Ollama protocol) by c concurrent clients, once with coalescing and once one by one (``coalesce=False``),
   each on a fresh server: requests/s, p50/p95 latency, SLM calls and batch size, answers equal to the reference.
4. **Load**: ``--load-requests`` requests from ``--load-clients`` concurrent clients against a server with small
   limits (max_concurrency 16, max_queue 32): every request is answered (equal to the reference) or refused with
   a documented status (429/503), none lost or duplicated.

Gate decisions: coalesced batches pad prompts on the left, which can move token probabilities in the last digits;
the table counts the answers and stages that differ from the one-by-one reference and the largest difference in
the gate's signal (mean token probability).
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import httpx  # noqa: E402
from tqdm import tqdm  # noqa: E402

from langchain_slm_router.evaluation.datasets import load_math_queries, load_nq_open  # noqa: E402
from langchain_slm_router.router import SLMRouter  # noqa: E402
from langchain_slm_router.server import RouterServer, ServerSettings  # noqa: E402
from langchain_slm_router.slm import LocalSLM  # noqa: E402

DOCUMENTED_REFUSALS = {429, 503}


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


async def ask(client: httpx.AsyncClient, i: int, question: str) -> dict[str, Any]:
    """One request (even i: OpenAI protocol, odd i: Ollama protocol); its status, answer, trace and latency."""
    start = time.perf_counter()
    if i % 2 == 0:
        r = await client.post("/v1/chat/completions", json={"model": "slm-router",
                                                            "messages": [{"role": "user", "content": question}]})
        body = r.json()
        answer = body["choices"][0]["message"]["content"] if r.status_code == 200 else None
    else:
        r = await client.post("/api/chat", json={"model": "slm-router", "stream": False,
                                                 "messages": [{"role": "user", "content": question}]})
        body = r.json()
        answer = body["message"]["content"] if r.status_code == 200 else None
    wall = time.perf_counter() - start
    return {"i": i, "status": r.status_code, "answer": answer, "trace": body.get("slm_router"), "wall": wall}


async def run_clients(base_url: str, questions: list[str], n: int, clients: int, desc: str) -> tuple[list, float]:
    """``n`` requests (questions cycled) from ``clients`` concurrent clients; results by request index."""
    todo = list(range(n))
    results: list[dict[str, Any]] = []
    bar = tqdm(total=n, desc=desc, leave=False, file=sys.stderr)
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)

    async with httpx.AsyncClient(base_url=base_url, timeout=600, limits=limits) as client:
        async def worker() -> None:
            while todo:
                i = todo.pop(0)
                results.append(await ask(client, i, questions[i % len(questions)]))
                bar.update(1)

        start = time.perf_counter()
        await asyncio.gather(*[worker() for _ in range(clients)])
        wall = time.perf_counter() - start
    bar.close()
    return sorted(results, key=lambda r: r["i"]), wall


def compare(results: list[dict], questions: list[str], reference: dict[str, Any]) -> tuple[int, int, float]:
    """(answers differing from the reference, stages differing, largest |mean_prob| difference)."""
    answers = stages = 0
    drift = 0.0
    for r in results:
        if r["status"] != 200:
            continue
        ref = reference[questions[r["i"] % len(questions)]]
        answers += r["answer"] != ref.answer
        stages += r["trace"]["stage"] != ref.stage
        if r["trace"].get("signals") and ref.signals is not None:
            drift = max(drift, abs(r["trace"]["signals"]["mean_prob"] - ref.signals.mean_prob))
    return answers, stages, drift


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--concurrency", default="1,8,32,100")
    parser.add_argument("--questions", type=int, default=40, help="distinct questions (1/4 math, 3/4 NQ-open)")
    parser.add_argument("--overhead-questions", type=int, default=20, help="questions of the overhead pass")
    parser.add_argument("--min-requests", type=int, default=16,
                        help="requests per throughput cell: max(min-requests, clients)")
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument("--load-requests", type=int, default=200)
    parser.add_argument("--load-clients", type=int, default=100)
    parser.add_argument("--fallback", choices=["none", "local"], default="none",
                        help="none (default): the SLM's answer is returned when the gate rejects it, so the run "
                             "measures the server's own work; local: SmolLM2 behind the Ollama-protocol test server "
                             "on the same cores")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    n_math = args.questions // 4
    questions = [it.prompt for it in load_math_queries(args.data_dir, n_math, split="eval")]
    questions += [it.prompt for it in load_nq_open(args.data_dir, args.questions - n_math, split="eval")]
    questions = [questions[i] for i in sorted(range(len(questions)), key=lambda i: (i * 7919) % len(questions))]

    slm = LocalSLM(max_new_tokens=args.max_new_tokens)
    slm.load()
    fallback_server = None
    fallback = None
    if args.fallback == "local":
        from langchain_slm_router.fallback import default_fallback
        from langchain_slm_router.testing import OllamaProtocolServer

        fallback_server = OllamaProtocolServer({"smollm2": slm}).start()
        fallback = default_fallback("smollm2", fallback_server.base_url, num_predict=args.max_new_tokens,
                                    temperature=0)
    router = SLMRouter(slm=slm, fallback=fallback)
    load = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    print(f"# bench_server: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {load}")
    print(f"SLM {slm.model_name} (max_new_tokens={args.max_new_tokens}, torch threads {args.threads}); fallback: "
          f"{'SmolLM2 via the Ollama-protocol test server (ChatOllama)' if fallback else 'none'}; "
          f"{len(questions)} distinct questions ({n_math} math, {len(questions) - n_math} NQ-open)\n")

    # 1. reference, in-process
    router.route(questions[-1])  # warm-up
    reference: dict[str, Any] = {}
    direct: list[float] = []
    for q in tqdm(questions, desc="reference (SLMRouter.route)", leave=False, file=sys.stderr):
        t = time.perf_counter()
        reference[q] = router.route(q)
        direct.append(time.perf_counter() - t)
    stages = [r.stage for r in reference.values()]
    print(f"Reference, SLMRouter.route one by one: {len(questions) / sum(direct):.2f} queries/s; stages "
          f"math {stages.count('math')}, slm {stages.count('slm')}, llm {stages.count('llm')}\n")

    # 2. overhead, one by one over HTTP
    rows = []
    for coalesce in (True, False):
        with RouterServer(router, ServerSettings(port=0, coalesce=coalesce)) as srv:
            results, wall = asyncio.run(run_clients(srv.base_url, questions, args.overhead_questions, 1,
                                                    f"overhead coalesce={coalesce}"))
        overhead = [r["wall"] * 1000 - r["trace"]["latency_ms"]["total"] for r in results if r["status"] == 200]
        math_overhead = [o for o, r in zip(overhead, results) if r["trace"]["stage"] == "math"]
        rows.append((coalesce, overhead, math_overhead, compare(results, questions, reference)))
    print("| server | requests | overhead p50 ms | overhead p95 ms | math-only p50 ms | answers != route() |")
    print("|---|---:|---:|---:|---:|---:|")
    for coalesce, overhead, math_overhead, (diff, _, _) in rows:
        print(f"| {'coalescing' if coalesce else 'one by one'} | {len(overhead)} | {pct(overhead, .5):.2f} | "
              f"{pct(overhead, .95):.2f} | {pct(math_overhead, .5):.2f} | {diff} |")
    print("\n(overhead = HTTP round trip seen by the client minus the router's own latency_ms.total)\n")

    # 3. throughput: coalesced vs one by one
    print("| clients | requests | mode | req/s | p50 s | p95 s | SLM calls | mean batch | answers != ref | "
          "stages != ref | max abs d(mean_prob) | speed-up |")
    print("|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for c in [int(x) for x in args.concurrency.split(",")]:
        n = max(args.min_requests, c)
        rate: dict[bool, float] = {}
        for coalesce in (False, True):
            settings = ServerSettings(port=0, coalesce=coalesce, max_concurrency=max(c, 1), max_queue=4 * c + 16)
            with RouterServer(router, settings) as srv:
                results, wall = asyncio.run(run_clients(srv.base_url, questions, n, c,
                                                        f"c={c} coalesce={coalesce}"))
                batcher = srv.service.batcher
                slm_ran = sum(1 for r in results if r["trace"] and r["trace"].get("slm_answer") is not None)
                calls = batcher.batches if batcher else slm_ran
                convs = batcher.conversations if batcher else slm_ran
            ok = [r for r in results if r["status"] == 200]
            lat = [r["wall"] for r in ok]
            diff, stage_diff, drift = compare(results, questions, reference)
            rate[coalesce] = len(ok) / wall
            speed = f"{rate[True] / rate[False]:.2f}x" if coalesce else "1.00x"
            print(f"| {c} | {n} | {'coalesced' if coalesce else 'one by one'} | {rate[coalesce]:.2f} | "
                  f"{pct(lat, .5):.2f} | {pct(lat, .95):.2f} | {calls} | {convs / max(calls, 1):.1f} | {diff} | "
                  f"{stage_diff} | {drift:.1e} | {speed} |", flush=True)
            assert len(ok) == n, f"{n - len(ok)} requests not answered"

    # 4. bounded load with small limits
    settings = ServerSettings(port=0, max_concurrency=16, max_queue=32)
    with RouterServer(router, settings) as srv:
        results, wall = asyncio.run(run_clients(srv.base_url, questions, args.load_requests, args.load_clients,
                                                "load"))
        accepted = srv.service.accepted
    statuses: dict[int, int] = {}
    for r in results:
        statuses[r["status"]] = statuses.get(r["status"], 0) + 1
    ok = [r for r in results if r["status"] == 200]
    lat = [r["wall"] for r in ok]
    diff, stage_diff, drift = compare(results, questions, reference)
    lost = args.load_requests - len({r["i"] for r in results})
    undocumented = sum(v for k, v in statuses.items() if k != 200 and k not in DOCUMENTED_REFUSALS)
    print(f"\nLoad: {args.load_requests} requests from {args.load_clients} concurrent clients, max_concurrency 16, "
          f"max_queue 32: statuses {dict(sorted(statuses.items()))}; accepted {accepted}, answered {len(ok)}; "
          f"lost {lost}; undocumented statuses {undocumented}; answers != reference {diff}, stages != reference "
          f"{stage_diff}; {len(ok) / wall:.2f} answers/s; p50 {pct(lat, .5):.2f} s, p95 {pct(lat, .95):.2f} s")
    if fallback_server is not None:
        fallback_server.stop()
    print(f"\nfinished {time.strftime('%H:%M UTC', time.gmtime())}; "
          f"{subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}")
    return 0 if (lost == 0 and undocumented == 0 and accepted == len(ok)) else 1


if __name__ == "__main__":
    raise SystemExit(main())
