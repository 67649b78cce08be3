"""Benchmark batched SLM generation against the same queries one by one, side by side in one run.

Usage::

    python benchmarks/bench_slm_batch.py [--data-dir DIR] [--n 16] [--batch-sizes 1,4,8]
                                         [--max-new-tokens 32] [--threads 0]

Takes the first ``--n`` NQ-open questions (closed-book, short answers), answers them with the real SLM once per
batch size (batch size 1 = one by one) and prints a Markdown table: wall time, queries/s, generated tokens/s,
speed-up over one by one, and whether the batched answers equal the one-by-one answers (greedy decoding, left
padding). The model is loaded and warmed up before timing.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from langchain_slm_router.errors import DataUnavailableError  # noqa: E402
from langchain_slm_router.evaluation.datasets import default_data_dir, read_rows  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="folder holding nq_open_dev.jsonl (default: $SLM_ROUTER_DATA_DIR, else ../shared/data "
                             "when it exists, else NQ-open from the Hugging Face hub)")
    parser.add_argument("--n", type=int, default=16)
    parser.add_argument("--batch-sizes", default="1,4,8")
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args(argv)

    try:
        rows = read_rows("nq_open", args.data_dir or default_data_dir())[: args.n]
    except DataUnavailableError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    from langchain_slm_router.slm import LocalSLM  # after the data: a missing data set fails before torch loads

    convs = [[{"role": "user", "content": r["question"].rstrip("?") + "?"}] for r in rows]
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    base = LocalSLM(max_new_tokens=args.max_new_tokens)
    t0 = time.perf_counter()
    base.load()
    load_s = time.perf_counter() - t0
    base.generate(convs[0])  # warm-up

    print(f"SLM {base.model_name}, {len(convs)} NQ-open questions, max_new_tokens={args.max_new_tokens}, "
          f"load {load_s:.1f} s\n")
    print("| batch size | wall s | queries/s | generated tok/s | speed-up vs 1-by-1 | same answers as 1-by-1 |")
    print("|---:|---:|---:|---:|---:|---:|")
    reference: list[str] | None = None
    base_s = None
    for size in [int(s) for s in args.batch_sizes.split(",")]:
        slm = base.model_copy(update={"max_batch_size": size})
        start = time.perf_counter()
        gens = [slm.generate(c) for c in convs] if size == 1 else slm.generate_batch(convs)
        wall = time.perf_counter() - start
        texts = [g.text for g in gens]
        tokens = sum(g.output_tokens for g in gens)
        if reference is None:
            reference, base_s = texts, wall
        same = sum(a == b for a, b in zip(texts, reference))
        print(f"| {size} | {wall:.1f} | {len(convs) / wall:.2f} | {tokens / wall:.1f} | {base_s / wall:.2f}x | "
              f"{same}/{len(convs)} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
