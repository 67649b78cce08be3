"""What the new signals cost per query: hidden-state capture in the generating pass, the probe, the context checks
and the pre-generation gate's embedding, measured side by side on the real default SLM in one process.

The SLM answers the same questions with ``hidden_layers=[]`` (no hooks) and with the default capture (middle and
last layer), alternating per question so machine load hits both alike; the other costs are timed on the answers.

    OMP_NUM_THREADS=1 python benchmarks/bench_signal_cost.py --data-dir ../shared/data --limit 12
"""

from __future__ import annotations

import argparse
import statistics
import time


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--dataset", default="nq_open")
    parser.add_argument("--limit", type=int, default=12)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--gate", default=None, help="a gate file with a probe (default: the shipped gate)")
    args = parser.parse_args(argv)

    import torch

    from langchain_slm_router.evaluation.datasets import default_data_dir, load_dataset
    from langchain_slm_router.evaluation.harness import DEFAULT_MAX_NEW_TOKENS
    from langchain_slm_router.gates import LearnedGate, generation_features
    from langchain_slm_router.gates.defaults import shipped_gate_for
    from langchain_slm_router.gates.pregen import embed_questions, question_text
    from langchain_slm_router.slm import LocalSLM

    torch.set_num_threads(args.threads)
    items = load_dataset(args.dataset, args.data_dir or default_data_dir(), limit=args.limit, split="eval")
    tokens = DEFAULT_MAX_NEW_TOKENS.get(args.dataset, 64)
    plain = LocalSLM(hidden_layers=[], max_new_tokens=tokens)
    capture = LocalSLM(max_new_tokens=tokens)
    plain.load()
    gate = LearnedGate.load(args.gate) if args.gate else shipped_gate_for(capture)
    embed_questions(["warm up"])
    plain.generate([{"role": "user", "content": "warm up"}])
    t_plain, t_cap, t_feat, t_gate, t_embed, same = [], [], [], [], [], 0
    for i, item in enumerate(items):
        msgs = [{"role": "user", "content": item.prompt}]
        order = (plain, capture) if i % 2 == 0 else (capture, plain)
        gens = {}
        for slm in order:
            start = time.perf_counter()
            gens[id(slm)] = slm.generate(msgs)
            (t_plain if slm is plain else t_cap).append(time.perf_counter() - start)
        a, b = gens[id(plain)], gens[id(capture)]
        same += a.text == b.text
        start = time.perf_counter()
        generation_features(b, msgs)
        t_feat.append(time.perf_counter() - start)
        if gate is not None:
            start = time.perf_counter()
            gate.decide(b, msgs)
            t_gate.append(time.perf_counter() - start)
        start = time.perf_counter()
        embed_questions([question_text(msgs)])
        t_embed.append(time.perf_counter() - start)

    def ms(xs: list[float]) -> str:
        return f"{1000 * statistics.median(xs):.1f}" if xs else "-"

    base = statistics.median(t_plain)
    print(f"{args.dataset} eval, {len(items)} questions, torch threads {args.threads}, medians per query\n")
    print("| step | ms/query | share of the SLM's time |")
    print("|---|---|---|")
    print(f"| SLM generate, no capture | {ms(t_plain)} | 100% |")
    print(f"| SLM generate, hidden capture (middle + last layer) | {ms(t_cap)} | "
          f"{100 * statistics.median(t_cap) / base:.1f}% |")
    print(f"| token + context features | {ms(t_feat)} | {100 * statistics.median(t_feat) / base:.2f}% |")
    if t_gate:
        print(f"| learned gate decide (features + probe + calibration) | {ms(t_gate)} | "
              f"{100 * statistics.median(t_gate) / base:.2f}% |")
    print(f"| pre-generation embedding (MiniLM) | {ms(t_embed)} | {100 * statistics.median(t_embed) / base:.2f}% |")
    print(f"\nsame answer with and without capture: {same}/{len(items)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
