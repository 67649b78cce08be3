"""Outputs of an evaluation run: a Markdown report, a JSON file with every per-question record, and PNG plots
of quality against the share of queries sent to the LLM across gate thresholds."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from langchain_slm_router.evaluation.summary import DatasetSummary


def _pct(x: float | None, digits: int = 1) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.{digits}f}%"


def _num(x: float | None, digits: int = 1) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def systems_table(summary: DatasetSummary) -> str:
    """The systems side by side, as a Markdown table."""
    squad = summary.dataset == "squad_v2"
    head = ["system", "quality" + (" (F1)" if squad else ""), *(["EM"] if squad else []), "% of LLM quality",
            "math / SLM / LLM share", "LLM calls avoided", "routing P / R / F1", "latency mean / p50 / p95 (s)",
            "total (s)", "speedup vs LLM"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|"]
    for m in summary.systems:
        routing = "–" if m.routing_f1 is None and m.routing_precision is None else \
            f"{_pct(m.routing_precision, 0)} / {_pct(m.routing_recall, 0)} / {_pct(m.routing_f1)}"
        cells = [m.system, _pct(m.quality), *([_pct(m.em)] if squad else []),
                 _num(m.pct_of_llm) + ("%" if m.pct_of_llm is not None else ""),
                 f"{_pct(m.share_math, 0)} / {_pct(m.share_slm, 0)} / {_pct(m.share_llm, 0)}",
                 _pct(m.pct_llm_avoided / 100.0, 0), routing,
                 f"{m.latency_mean_ms / 1000:.2f} / {m.latency_p50_ms / 1000:.2f} / {m.latency_p95_ms / 1000:.2f}",
                 f"{m.total_s:.1f}", _num(m.speedup_vs_llm, 2) + ("x" if m.speedup_vs_llm else "")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def auroc_line(summary: DatasetSummary) -> str:
    parts = [f"{k} {_num(v, 3)}" for k, v in summary.aurocs.items()]
    return f"SLM accuracy {_pct(summary.slm_accuracy)}; AUROC of each signal for 'SLM answer correct': " + \
        ", ".join(parts)


def calibration_line(summary: DatasetSummary) -> str:
    cal = summary.calibration
    if cal is None:
        return ""
    c = cal.choice
    return (f"Calibration ({c.target.describe()}) on {c.n} separate questions chose threshold "
            f"{c.threshold:.3f} (calibration split: quality {_pct(c.quality)}, LLM calls {_pct(c.llm_share, 0)}, "
            f"target {'met' if c.met else 'NOT met'}); held out on these {cal.heldout_n}: quality "
            f"{_pct(cal.heldout_quality)} vs always-LLM {_pct(cal.heldout_llm_quality)}, LLM calls "
            f"{_pct(cal.heldout_llm_share, 0)} (target {'met' if cal.heldout_met else 'not met'} on held-out data).")


def calibration_text(summary: DatasetSummary) -> str:
    """The calibration section of one data set: its heading, the calibration line, and how to use the threshold."""
    line = calibration_line(summary) or "no calibration (a threshold was given)"
    text = f"### {summary.dataset}\n\n{line}"
    if summary.calibrated_threshold is not None:
        text += f"\n\nUse it: SLMRouter().with_options(threshold={summary.calibrated_threshold:.3f})"
    return text


def markdown(summaries: Sequence[DatasetSummary], header: str = "") -> str:
    """The Markdown report of all data sets."""
    out = [header] if header else []
    for s in summaries:
        out += [f"### {s.dataset} (n={s.n})", "", systems_table(s), "", auroc_line(s)]
        line = calibration_line(s)
        if line:
            out += ["", line]
        out.append("")
    return "\n".join(out)


def write_json(path: Path, summaries: Sequence[DatasetSummary], records: dict[str, dict[str, list[dict]]],
               meta: dict[str, Any]) -> None:
    """Every summary and every per-question record (per data set and split)."""
    payload = {"meta": meta, "summaries": [s.model_dump(mode="json") for s in summaries], "records": records}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(payload, indent=1, ensure_ascii=False, default=str), encoding="utf-8")
    tmp.replace(path)


def plot(summary: DatasetSummary, path: Path, title: str | None = None) -> Path:
    """Quality vs % LLM calls across thresholds, with always-SLM, always-LLM, oracle and the router points, and
    the line of random escalation (a gate whose curve is not above it carries no information)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=110)
    curve = sorted(summary.curve, key=lambda p: (p["llm_share"], p["quality"]))
    ax.plot([100 * p["llm_share"] for p in curve], [100 * p["quality"] for p in curve], "-", color="#4c72b0",
            lw=1.6, label="router, threshold sweep")
    if len(curve) >= 2:  # escalating a random subset of the gated questions: the line between the sweep's ends
        lo, hi = curve[0], curve[-1]
        ax.plot([100 * lo["llm_share"], 100 * hi["llm_share"]], [100 * lo["quality"], 100 * hi["quality"]], "--",
                color="#999999", lw=1.0, label="random escalation")
    marks = {"always-SLM": ("s", "#55a868"), "always-LLM": ("D", "#c44e52"), "oracle": ("*", "#8172b2"),
             "router@seed": ("o", "#dd8452"), "router@calibrated": ("^", "#937860"), "router@given": ("^", "#937860")}
    for m in summary.systems:
        key = next((k for k in marks if m.system.startswith(k) and "live" not in m.system), None)
        if key is None:
            continue
        shape, color = marks[key]
        ax.plot(100 * m.share_llm, 100 * m.quality, shape, color=color, ms=11 if shape == "*" else 8,
                label=m.system, zorder=5)
    ax.set_xlabel("% of queries sent to the LLM")
    ax.set_ylabel("quality (%)" + (" F1" if summary.dataset == "squad_v2" else ""))
    ax.set_xlim(-3, 103)
    ax.grid(alpha=0.3)
    ax.set_title(title or f"{summary.dataset}: quality vs LLM calls (n={summary.n})")
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


__all__ = ["auroc_line", "calibration_line", "calibration_text", "markdown", "plot", "systems_table", "write_json"]
