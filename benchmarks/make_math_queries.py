"""Write a templated math query set of the math dev set's kinds, with sympy-computed answers.

Usage::

    python benchmarks/make_math_queries.py --out my_data/math_queries_dev.jsonl [--seed 2024] [--per-kind 27]

The rows come from :func:`langchain_slm_router.evaluation.math_sets.math_dev_queries` (the kinds and templates of
``math_queries_dev.jsonl``: arithmetic, percent, fraction, power, root, linear and quadratic equations, factor,
derivative, integral, simplify, and 20 non-math questions). Point ``--data-dir`` of ``slm-router eval`` or
``benchmarks/bench_math.py`` at the folder to use it. The project's own ``math_queries_dev.jsonl`` was made by an
earlier generator of the same kinds; this one regenerates a set of the same shape, not the same rows.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from langchain_slm_router.evaluation.math_sets import math_dev_queries  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="the JSONL file to write")
    parser.add_argument("--seed", type=int, default=2024)
    parser.add_argument("--per-kind", type=int, default=27)
    args = parser.parse_args(argv)
    rows = math_dev_queries(seed=args.seed, per_kind=args.per_kind)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    print(f"wrote {len(rows)} rows to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
