"""Write the everyday-phrasing math set (``benchmarks/data/math_phrasings.jsonl``) from its generator.

Usage::

    python benchmarks/make_math_phrasings.py [--out benchmarks/data/math_phrasings.jsonl] [--seed 14] [--check]

The rows come from :func:`langchain_slm_router.evaluation.math_sets.math_phrasings`: four authors' phrasings of
simple math with answers computed by sympy from the generating numbers, plus near-miss questions that are not
math. Authors A and B are the ``tune`` half, C and D the ``report`` half. ``--check`` verifies that the file is
what the generator writes (exit code 1 when it is not).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from langchain_slm_router.evaluation.math_sets import math_phrasings  # noqa: E402

DEFAULT_OUT = REPO / "benchmarks" / "data" / "math_phrasings.jsonl"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--seed", type=int, default=14)
    parser.add_argument("--check", action="store_true", help="compare the file with the generator's output")
    args = parser.parse_args(argv)
    text = "".join(json.dumps(row) + "\n" for row in math_phrasings(seed=args.seed))
    if args.check:
        same = args.out.is_file() and args.out.read_text(encoding="utf-8") == text
        print(f"{args.out}: {'matches' if same else 'does NOT match'} the generator (seed {args.seed})")
        return 0 if same else 1
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    print(f"wrote {text.count(chr(10))} rows to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
