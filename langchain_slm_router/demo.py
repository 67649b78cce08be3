"""The main job: the router answering a mixed batch of queries with the embedded defaults.

Run with ``make demo`` or ``python -m langchain_slm_router.demo``. The fallback is a real ``ChatOllama``: at
``OLLAMA_HOST`` (default http://localhost:11434) when an Ollama server there has the model (``--llm-model``,
default ``mistral``); otherwise the demo starts the project's local Ollama-protocol server, backed by the local
model, on a free port, and says so.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
import urllib.request
from collections.abc import Iterator

MIXED_BATCH = [
    "What is 17 * 23 + 4?",
    "Solve 3x - 7 = 20",
    "derivative of x^2*cos(x)",
    "What is 15% of 240?",
    "What is the chemical symbol for gold?",
    "What is the capital of France?",
    "Who wrote Romeo and Juliet?",
    "A farmer has 3 fields of 12 rows with 15 plants each; a third of the plants die and each survivor gives "
    "4 tomatoes. How many tomatoes does he harvest?",
]


def _ollama_has(base_url: str, model: str) -> bool:
    try:
        with urllib.request.urlopen(f"{base_url.rstrip('/')}/api/tags", timeout=1.5) as resp:
            tags = json.load(resp)
    except (OSError, ValueError):
        return False
    names = {m.get("name", "") for m in tags.get("models", [])}
    return any(n == model or n.split(":")[0] == model for n in names)


@contextlib.contextmanager
def demo_fallback(llm_model: str) -> Iterator[tuple[object, str]]:
    """A real ChatOllama: the user's Ollama if it has ``llm_model``, else the local Ollama-protocol server."""
    from langchain_ollama import ChatOllama

    from langchain_slm_router.fallback import default_fallback

    host = os.environ.get("OLLAMA_HOST", "http://localhost:11434")
    if not host.startswith("http"):
        host = "http://" + host
    if _ollama_has(host, llm_model):
        yield default_fallback(llm_model), f"ChatOllama({llm_model}) at {host}"
        return
    from langchain_slm_router.slm import LocalSLM
    from langchain_slm_router.engine_server import OllamaProtocolServer

    with OllamaProtocolServer({"smollm2": LocalSLM(max_new_tokens=96)}) as server:
        yield (
            ChatOllama(model="smollm2", base_url=server.base_url, num_predict=96),
            f"ChatOllama(smollm2) at {server.base_url} — no Ollama with '{llm_model}' at {host}, so the local "
            "Ollama-protocol server answers with the local model (start `ollama serve` and `ollama pull "
            f"{llm_model}` for the real fallback)",
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--llm-model", default="mistral", help="fallback model name on the Ollama server")
    parser.add_argument("--threshold", type=float, default=0.6, help="gate: minimum mean token probability")
    parser.add_argument("--json", action="store_true", help="print each full trace as JSON too")
    parser.add_argument("queries", nargs="*", help="queries to route (default: the built-in mixed batch)")
    args = parser.parse_args(argv)

    from langchain_slm_router import GatePolicy, SLMRouter

    queries = args.queries or MIXED_BATCH
    with demo_fallback(args.llm_model) as (fallback, described):
        print(f"fallback: {described}")
        router = SLMRouter(fallback=fallback, gate=GatePolicy(min_mean_prob=args.threshold),
                           on_fallback_error="return_slm")
        started = time.perf_counter()
        router.slm.load()  # load once, before timing the queries
        print(f"SLM: {router.slm.model_name} loaded in {time.perf_counter() - started:.1f} s; "
              f"gate: keep when mean token probability >= {args.threshold}\n")
        header = f"{'#':>2}  {'stage':5}  {'conf':>5}  {'ms':>8}  query -> answer"
        print(header)
        print("-" * len(header))
        counts: dict[str, int] = {}
        total = time.perf_counter()
        for i, query in enumerate(queries, 1):
            r = router.route(query)
            counts[r.stage] = counts.get(r.stage, 0) + 1
            conf = f"{r.signals.mean_prob:.2f}" if r.signals else "  -  "
            answer = " ".join(r.answer.split())
            print(f"{i:>2}  {r.stage:5}  {conf:>5}  {r.latency_ms['total']:8.1f}  {query[:60]}")
            print(f"{'':>27}-> {answer[:110]}{' [low confidence]' if r.low_confidence else ''}")
            if args.json:
                print(json.dumps(r.trace(), indent=2))
        elapsed = time.perf_counter() - total
        print(f"\n{len(queries)} queries in {elapsed:.1f} s; answered by "
              + ", ".join(f"{k}: {v}" for k, v in sorted(counts.items())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
