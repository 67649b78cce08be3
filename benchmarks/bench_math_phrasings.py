"""How the math engine does on everyday phrasings of simple math: answered right, answered wrong, declined.

Usage::

    python benchmarks/bench_math_phrasings.py [--split tune|report|all] [--show-declined] [--data-dir DIR]

Reads ``benchmarks/data/math_phrasings.jsonl`` (written by ``benchmarks/make_math_phrasings.py``) and prints one
Markdown table per half: the ``tune`` half (authors A and B; the parser was tuned on it) and the ``report`` half
(authors C and D; never used for tuning). Near-miss questions that are not math (``kind: not_math``) count as
right when declined. With a data folder (``--data-dir`` or ``SLM_ROUTER_DATA_DIR``) holding
``math_queries_dev.jsonl``, the dev set's non-math questions are checked too (all must be declined).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from langchain_slm_router.evaluation.datasets import default_data_dir  # noqa: E402
from langchain_slm_router.evaluation.symbolic import answers_match  # noqa: E402
from langchain_slm_router.math_engine import MathEngine  # noqa: E402

PHRASINGS = REPO / "benchmarks" / "data" / "math_phrasings.jsonl"


def _right(got: str, expected: str) -> bool:
    return answers_match(got.rstrip("%"), expected.rstrip("%"), require_form=False) and \
        got.endswith("%") == expected.endswith("%")


def _table(rows: list[dict[str, Any]], engine: MathEngine, show_declined: bool) -> str:
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0])  # n, right, wrong, declined
    notes = []
    for row in rows:
        got = engine.explain(row["query"])
        c = counts[row["kind"]]
        c[0] += 1
        answer = getattr(got, "answer", None)
        if row["answer"] is None:
            c[1 if answer is None else 2] += 1
            if answer is not None:
                notes.append(f"  ANSWERED NON-MATH {row['query']!r} -> {answer!r}")
        elif answer is None:
            c[3] += 1
            if show_declined:
                notes.append(f"  declined {row['query']!r} ({got.reason})")
        elif _right(answer, row["answer"]):
            c[1] += 1
        else:
            c[2] += 1
            notes.append(f"  WRONG {row['query']!r} -> {answer!r} (expected {row['answer']!r})")
    lines = ["| kind | n | answered right | answered wrong | declined |", "| --- | ---: | ---: | ---: | ---: |"]
    total = [0, 0, 0, 0]
    for kind, (n, right, wrong, declined) in sorted(counts.items(), key=lambda kv: kv[0] == "not_math"):
        label = "not math (right = declined)" if kind == "not_math" else kind
        lines.append(f"| {label} | {n} | {right} | {wrong} | {declined} |")
        if kind != "not_math":
            total = [t + v for t, v in zip(total, (n, right, wrong, declined))]
    lines.append(f"| **all math** | {total[0]} | {total[1]} ({100 * total[1] / max(1, total[0]):.0f}%) | {total[2]} | "
                 f"{total[3]} |")
    return "\n".join(lines + notes)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", choices=("tune", "report", "all"), default="all")
    parser.add_argument("--show-declined", action="store_true", help="list the declined math queries")
    parser.add_argument("--file", type=Path, default=PHRASINGS)
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="folder with math_queries_dev.jsonl (default: $SLM_ROUTER_DATA_DIR, else ../shared/data "
                             "when it exists); optional")
    args = parser.parse_args(argv)
    if not args.file.is_file():
        print(f"error: {args.file} not found; write it with: python benchmarks/make_math_phrasings.py",
              file=sys.stderr)
        return 2
    rows = [json.loads(line) for line in args.file.read_text(encoding="utf-8").splitlines() if line.strip()]
    engine = MathEngine()
    for split in (("tune", "report") if args.split == "all" else (args.split,)):
        part = [r for r in rows if r["split"] == split]
        authors = "".join(sorted({r["author"] for r in part}))
        print(f"\n### {split} half (authors {', '.join(authors)}; {len(part)} queries)\n")
        print(_table(part, engine, args.show_declined))
    data_dir = args.data_dir or default_data_dir()
    dev = data_dir / "math_queries_dev.jsonl" if data_dir else None
    if dev is not None and dev.is_file():
        not_math = [json.loads(line) for line in dev.read_text(encoding="utf-8").splitlines() if line.strip()]
        not_math = [r for r in not_math if r["kind"] == "not_math"]
        taken = [r["query"] for r in not_math if engine.solve(r["query"]) is not None]
        print(f"\nDev set non-math questions declined: {len(not_math) - len(taken)}/{len(not_math)}"
              + (f"; ANSWERED: {taken}" if taken else ""))
    elif data_dir is not None:
        print(f"\n(no math_queries_dev.jsonl in {data_dir}: dev-set non-math check skipped)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
