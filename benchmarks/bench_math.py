"""Benchmark the sympy math engine on the math dev set: accuracy per kind and latency per query.

Usage::

    python benchmarks/bench_math.py [--data-dir DIR] [--repeat 1]

Runs one warm-up pass over the dev set, then the timed pass(es), and prints a Markdown table. An answer is
correct when it is symbolically equal to the expected one (solution sets compared as sets, ``+ C`` dropped
from both sides of an integral); ``not_math`` rows count as correct when the engine declines them.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from langchain_slm_router.errors import DataUnavailableError  # noqa: E402
from langchain_slm_router.evaluation.datasets import default_data_dir, read_rows  # noqa: E402
from langchain_slm_router.evaluation.symbolic import answers_match  # noqa: E402
from langchain_slm_router.math_engine import MathEngine  # noqa: E402


def run(rows: list[dict[str, Any]], engine: MathEngine, repeat: int) -> str:
    for row in rows:  # warm-up pass (imports, sympy caches of the engine's own internals)
        engine.solve(row["query"])
    per_kind: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    latencies: list[float] = []
    kind_lat: dict[str, list[float]] = defaultdict(list)
    failures: list[str] = []
    for _ in range(repeat):
        for row in rows:
            start = time.perf_counter()
            result = engine.solve(row["query"])
            elapsed = (time.perf_counter() - start) * 1000.0
            latencies.append(elapsed)
            kind_lat[row["kind"]].append(elapsed)
            if row["kind"] == "not_math" or row["answer"] is None:
                ok = result is None
            else:
                ok = result is not None and answers_match(result.answer, row["answer"], require_form=False)
            per_kind[row["kind"]][0] += int(ok)
            per_kind[row["kind"]][1] += 1
            if not ok:
                failures.append(f"{row['query']!r}: expected {row['answer']!r}, "
                                f"got {result.answer if result else None!r}")
    math_ok = sum(v[0] for k, v in per_kind.items() if k != "not_math")
    math_n = sum(v[1] for k, v in per_kind.items() if k != "not_math")
    lines = ["| kind | correct | total | accuracy | median ms | p95 ms |", "|---|---:|---:|---:|---:|---:|"]
    for kind in sorted(per_kind):
        ok, n = per_kind[kind]
        lat = sorted(kind_lat[kind])
        lines.append(f"| {kind} | {ok} | {n} | {100.0 * ok / n:.1f}% | {statistics.median(lat):.3f} | "
                     f"{lat[int(0.95 * (len(lat) - 1))]:.3f} |")
    lat = sorted(latencies)
    not_math = per_kind.get("not_math", [0, 0])
    lines += [
        "",
        "| metric | value |",
        "|---|---:|",
        f"| math accuracy | {math_ok}/{math_n} = {100.0 * math_ok / max(math_n, 1):.2f}% |",
        f"| not_math declined | {not_math[0]}/{not_math[1]} |",
        f"| median latency (ms) | {statistics.median(lat):.3f} |",
        f"| p95 latency (ms) | {lat[int(0.95 * (len(lat) - 1))]:.3f} |",
        f"| mean latency (ms) | {statistics.fmean(lat):.3f} |",
        f"| queries timed | {len(lat)} |",
    ]
    if failures:
        lines += ["", "Failures:"] + [f"- {f}" for f in failures[:50]]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="folder holding math_queries_dev.jsonl (default: $SLM_ROUTER_DATA_DIR, else "
                             "../shared/data when it exists, else the generated set of benchmarks/make_math_queries.py)")
    parser.add_argument("--repeat", type=int, default=1, help="timed passes over the dev set (default 1)")
    args = parser.parse_args(argv)
    data_dir = args.data_dir or default_data_dir()
    try:
        rows = read_rows("math", data_dir)
    except DataUnavailableError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"math queries: {data_dir / 'math_queries_dev.jsonl' if data_dir else 'generated (math_dev_queries)'}\n")
    print(run(rows, MathEngine(), args.repeat))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
