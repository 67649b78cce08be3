"""Benchmark the sympy math engine on the math dev set: accuracy per kind and latency per query.

Usage::

    python benchmarks/bench_math.py [--data-dir ../shared/data] [--repeat 1]

Runs one warm-up pass over the dev set, then the timed pass(es), and prints a Markdown table. An answer is
correct when it is symbolically equal to the expected one (solution sets compared as sets, ``+ C`` dropped
from both sides of an integral); ``not_math`` rows count as correct when the engine declines them.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import sympy as sp
from sympy.parsing.sympy_parser import parse_expr

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from langchain_slm_router.math_engine import MathEngine  # noqa: E402

_X = {c: sp.Symbol(c) for c in "abcdfghjklmnopqrstuvwxyz"}


def _parse(text: str) -> sp.Expr:
    # Trusted strings only (dataset answers and the engine's own sympy str() output).
    return parse_expr(text.replace("^", "**"), local_dict=dict(_X))


def _solution_set(text: str) -> tuple[str, list[sp.Expr]] | None:
    if "=" not in text:
        return None
    var, _, rest = text.partition("=")
    if rest.strip() == "no solution":
        return var.strip(), []
    return var.strip(), [_parse(part) for part in rest.split(",")]


def answers_match(got: str, expected: str) -> bool:
    """Symbolic comparison of an engine answer with an expected answer string."""
    try:
        exp_set, got_set = _solution_set(expected), _solution_set(got)
        if exp_set is not None or got_set is not None:
            if exp_set is None or got_set is None or exp_set[0] != got_set[0]:
                return False
            exp_vals, got_vals = exp_set[1], got_set[1]
            if len(exp_vals) != len(got_vals):
                return False
            return all(any(sp.simplify(g - e) == 0 for g in got_vals) for e in exp_vals)
        exp_c, got_c = expected.strip().endswith("+ C"), got.strip().endswith("+ C")
        if exp_c != got_c:
            return False
        if exp_c:
            expected, got = expected.strip()[:-3], got.strip()[:-3]
            diff = sp.simplify(_parse(got) - _parse(expected))
            return not diff.free_symbols  # antiderivatives may differ by a constant
        return sp.simplify(_parse(got) - _parse(expected)) == 0
    except Exception:  # noqa: BLE001 - an unparsable answer is simply wrong
        return False


def load_rows(data_dir: Path) -> list[dict[str, Any]]:
    path = data_dir / "math_queries_dev.jsonl"
    with path.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


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
                ok = result is not None and answers_match(result.answer, row["answer"])
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
    parser.add_argument("--data-dir", type=Path, default=REPO.parent / "shared" / "data",
                        help="folder holding math_queries_dev.jsonl (default: ../shared/data from the repo root)")
    parser.add_argument("--repeat", type=int, default=1, help="timed passes over the dev set (default 1)")
    args = parser.parse_args(argv)
    rows = load_rows(args.data_dir)
    print(run(rows, MathEngine(), args.repeat))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
