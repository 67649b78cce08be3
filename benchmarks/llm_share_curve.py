"""From an ``slm-router eval`` results.json: the router's quality at each LLM share (gate = mean token probability).

Usage::

    python benchmarks/llm_share_curve.py bench_out/r15_local/results.json [...] --dataset squad_v2 \
        [--max-llm-share 0.3] [--quality 0.95]

For each results file prints, on the evaluation split of ``--dataset``: always-SLM and always-LLM quality, the best
router quality with at most ``--max-llm-share`` LLM calls, and the smallest LLM share whose router quality reaches
``--quality`` x always-LLM (thresholds swept over the records' own mean token probabilities). This reads the
evaluation records themselves, so it describes the curve of the plots (what the best threshold *could* do); the
held-out calibrated row of the report is what a threshold chosen beforehand does.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from langchain_slm_router.evaluation import systems  # noqa: E402


def curve(records: list[dict]) -> list[tuple[float, float, float]]:
    """(threshold, LLM share, quality) for every distinct threshold, from keep-everything to escalate-everything."""
    probs = sorted({(r["slm"].get("signals") or {}).get("mean_prob", 0.0) for r in records if r.get("slm")})
    out = []
    for t in [0.0, *[p + 1e-12 for p in probs], 1.1]:
        outcomes = [systems.router(r, t) for r in records]
        out.append((t, sum(o.llm_called for o in outcomes) / len(outcomes),
                    sum(o.score for o in outcomes) / len(outcomes)))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="+", type=Path)
    parser.add_argument("--dataset", default="squad_v2")
    parser.add_argument("--max-llm-share", type=float, default=0.3)
    parser.add_argument("--quality", type=float, default=0.95)
    args = parser.parse_args(argv)
    print(f"| run | SLM | n | always-SLM | always-LLM | best router with <= {args.max_llm_share:.0%} LLM calls | "
          f"LLM share for >= {args.quality:.0%} of always-LLM |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for path in args.results:
        data = json.loads(path.read_text())
        records = data["records"][args.dataset]["eval"]
        llm_q = sum(systems.always_llm(r).score for r in records) / len(records)
        slm_q = sum(systems.always_slm(r).score for r in records) / len(records)
        points = curve(records)
        best = max((q for _, share, q in points if share <= args.max_llm_share + 1e-9), default=float("nan"))
        need = min((share for _, share, q in points if q >= args.quality * llm_q - 1e-9), default=float("nan"))
        print(f"| {path.parent.name} | {data['meta']['slm']} | {len(records)} | {slm_q:.1%} | {llm_q:.1%} | "
              f"{best:.1%} ({best / llm_q:.0%} of LLM) | {need:.0%} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
