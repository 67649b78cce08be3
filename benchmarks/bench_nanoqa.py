"""NanoQA before/after: the stock SLM against fine-tuned adapters on the harness's evaluation split only.

For each system (``stock`` = ``LocalSLM(adapter=None)``, and each ``NAME=ADAPTER_FOLDER``) it answers the first
``--squad`` / ``--nq`` / ``--gsm8k`` evaluation questions (the harness's loaders, split ``eval``; training never
sees them) and prints:

* SQuAD 2.0 F1/EM on the answerable questions and the abstention rate on the unanswerable ones, apart; NQ-open
  and GSM8K accuracy;
* AUROC of every confidence signal for "SLM answer correct" (SQuAD, and all questions), expected calibration
  error (10 bins) of the mean token probability, and a reliability diagram (``reliability.png``);
* with ``--llm-answers`` (a JSONL of the LLM's answers to the same questions, from ``training.teacher``): the
  router's SQuAD F1 when the lowest-confidence 30% go to the LLM, and the LLM share it needs for 95% of
  always-LLM F1 (gate = mean token probability);
* with ``--curve RUN_FOLDER``: F1 / abstention / AUROC of every learning-curve snapshot (``curve.png``).

Usage::

    python benchmarks/bench_nanoqa.py --system nanoqa=langchain_slm_router/slm/adapters/nanoqa --squad 80 \\
        --nq 30 --gsm8k 8 --llm-answers llm_eval.jsonl --out bench_out/nanoqa
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from langchain_slm_router.evaluation.datasets import load_gsm8k, load_nq_open, load_squad_v2
from langchain_slm_router.evaluation.harness import DEFAULT_MAX_NEW_TOKENS
from langchain_slm_router.evaluation.metrics import auroc
from langchain_slm_router.evaluation.scoring import score_answer
from langchain_slm_router.signals import HIGHER_IS_CONFIDENT

SIGNALS = ("mean_prob", "min_prob", "mean_logprob", "mean_entropy", "length")


def answer(adapter: str | None, items: list, batch: int) -> list[dict[str, Any]]:
    """Answer ``items`` with the SLM (+ ``adapter``); one record per item with its score and signals."""
    from langchain_slm_router.slm import LocalSLM

    out = []
    for dataset in ("squad_v2", "nq_open", "gsm8k"):
        group = [i for i in items if i.dataset == dataset]
        if not group:
            continue
        slm = LocalSLM(adapter=adapter, max_new_tokens=DEFAULT_MAX_NEW_TOKENS[dataset], max_batch_size=batch,
                       overflow="truncate", max_input_tokens=1536)
        gens = slm.generate_batch([[{"role": "user", "content": i.prompt}] for i in group])
        for item, gen in zip(group, gens):
            s = score_answer(item.dataset, gen.text, item.answers, item.unanswerable)
            out.append({"id": item.id, "dataset": dataset, "kind": item.kind, "text": gen.text,
                        "score": s.score, "correct": s.correct, "em": s.em, "abstained": s.abstained,
                        "signals": gen.signals.model_dump()})
    return out


def ece(probs: list[float], correct: list[bool], bins: int = 10) -> tuple[float, list[tuple[float, float, int]]]:
    """Expected calibration error and the (mean confidence, accuracy, count) of each non-empty bin."""
    rows = []
    total = 0.0
    for b in range(bins):
        lo, hi = b / bins, (b + 1) / bins
        idx = [i for i, p in enumerate(probs) if lo <= p < hi or (b == bins - 1 and p == 1.0)]
        if not idx:
            continue
        conf = sum(probs[i] for i in idx) / len(idx)
        acc = sum(correct[i] for i in idx) / len(idx)
        total += len(idx) * abs(conf - acc)
        rows.append((conf, acc, len(idx)))
    return (total / len(probs) if probs else float("nan")), rows


def aurocs(recs: list[dict[str, Any]]) -> dict[str, float | None]:
    labels = [r["correct"] for r in recs]
    out = {}
    for name in SIGNALS:
        sign = 1.0 if HIGHER_IS_CONFIDENT.get(name, True) else -1.0
        out[name] = auroc([sign * r["signals"][name] for r in recs], labels)
    return out


def router(recs: list[dict[str, Any]], llm: dict[str, dict[str, Any]], items: dict[str, Any]) -> dict[str, Any]:
    """Router F1 on SQuAD with the mean-probability gate: at <= 30% LLM calls, and the share for 95% of LLM F1."""
    rows = []
    for r in recs:
        if r["dataset"] != "squad_v2" or r["id"] not in llm:
            continue
        it = items[r["id"]]
        ls = score_answer(it.dataset, llm[r["id"]]["answer"], it.answers, it.unanswerable).score
        rows.append((r["signals"]["mean_prob"], r["score"], ls))
    if not rows:
        return {}
    rows.sort(key=lambda x: x[0])  # least confident first: escalated first
    n = len(rows)
    llm_q = sum(x[2] for x in rows) / n

    def quality(k: int) -> float:
        return (sum(x[2] for x in rows[:k]) + sum(x[1] for x in rows[k:])) / n

    at30 = quality(int(0.3 * n))
    need = next((k / n for k in range(n + 1) if quality(k) >= 0.95 * llm_q), 1.0)
    return {"n": n, "always_llm_f1": llm_q, "always_slm_f1": quality(0), "router_f1_at_30pct": at30,
            "pct_of_llm_at_30pct": at30 / llm_q if llm_q else None, "llm_share_for_95pct": need}


def summarize(name: str, recs: list[dict[str, Any]], llm: dict | None, items: dict) -> dict[str, Any]:
    sq = [r for r in recs if r["dataset"] == "squad_v2"]
    ans = [r for r in sq if r["kind"] == "answerable"]
    una = [r for r in sq if r["kind"] == "unanswerable"]
    mean = lambda xs: sum(xs) / len(xs) if xs else None  # noqa: E731
    e, _ = ece([r["signals"]["mean_prob"] for r in recs], [r["correct"] for r in recs])
    return {
        "system": name, "squad_n": len(sq), "squad_f1": mean([r["score"] for r in sq]),
        "answerable_f1": mean([r["score"] for r in ans]), "answerable_em": mean([r["em"] for r in ans]),
        "answerable_abstained": mean([float(r["abstained"]) for r in ans]),
        "unanswerable_abstained": mean([float(r["abstained"]) for r in una]),
        "nq_acc": mean([r["score"] for r in recs if r["dataset"] == "nq_open"]),
        "gsm8k_acc": mean([r["score"] for r in recs if r["dataset"] == "gsm8k"]),
        "auroc_squad": aurocs(sq), "auroc_all": aurocs(recs), "ece_mean_prob": e,
        "router": router(recs, llm, items) if llm else {},
    }


def fmt(x: Any) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%" if isinstance(x, float) else str(x)


def table(summaries: list[dict[str, Any]]) -> str:
    lines = ["| system | SQuAD F1 | answerable F1 | answerable EM | unanswerable abstained | answerable abstained | "
             "NQ acc | GSM8K acc | ECE(mean_prob) |", "|---|---|---|---|---|---|---|---|---|"]
    for s in summaries:
        lines.append(f"| {s['system']} | {fmt(s['squad_f1'])} | {fmt(s['answerable_f1'])} | "
                     f"{fmt(s['answerable_em'])} | {fmt(s['unanswerable_abstained'])} | "
                     f"{fmt(s['answerable_abstained'])} | {fmt(s['nq_acc'])} | {fmt(s['gsm8k_acc'])} | "
                     f"{s['ece_mean_prob']:.3f} |")
    lines += ["", "AUROC for 'SLM answer correct' (SQuAD / all questions):", "",
              "| system | " + " | ".join(SIGNALS) + " |", "|---|" + "---|" * len(SIGNALS)]
    for s in summaries:
        cells = [f"{_a(s['auroc_squad'][k])} / {_a(s['auroc_all'][k])}" for k in SIGNALS]
        lines.append(f"| {s['system']} | " + " | ".join(cells) + " |")
    if any(s["router"] for s in summaries):
        lines += ["", "Router on SQuAD (gate: mean token probability; LLM answers from --llm-answers):", "",
                  "| system | n | always-SLM F1 | always-LLM F1 | router F1 at 30% LLM | % of LLM F1 | "
                  "LLM share for 95% of LLM F1 |", "|---|---|---|---|---|---|---|"]
        for s in summaries:
            r = s["router"]
            if r:
                lines.append(f"| {s['system']} | {r['n']} | {fmt(r['always_slm_f1'])} | {fmt(r['always_llm_f1'])} | "
                             f"{fmt(r['router_f1_at_30pct'])} | {fmt(r['pct_of_llm_at_30pct'])} | "
                             f"{fmt(r['llm_share_for_95pct'])} |")
    return "\n".join(lines)


def _a(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.2f}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--system", action="append", default=[], metavar="NAME=ADAPTER",
                   help="a fine-tuned system to compare with the stock model (repeatable)")
    p.add_argument("--data-dir", type=Path, default=None)
    p.add_argument("--squad", type=int, default=80)
    p.add_argument("--nq", type=int, default=30)
    p.add_argument("--gsm8k", type=int, default=8)
    p.add_argument("--llm-answers", type=Path, default=None)
    p.add_argument("--curve", type=Path, default=None, help="a training run folder: evaluate its curve/ snapshots")
    p.add_argument("--curve-squad", type=int, default=40, help="SQuAD questions per learning-curve point")
    p.add_argument("--curve-every", type=int, default=1, help="evaluate every Nth snapshot")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--out", type=Path, default=Path("bench_out/nanoqa"))
    args = p.parse_args(argv)
    import torch

    from langchain_slm_router.evaluation.datasets import default_data_dir
    from langchain_slm_router.training.teacher import read_cache

    if args.threads:
        torch.set_num_threads(args.threads)
    data_dir = args.data_dir or default_data_dir()
    args.out.mkdir(parents=True, exist_ok=True)
    items = (load_squad_v2(data_dir, args.squad, split="eval") + load_nq_open(data_dir, args.nq, split="eval")
             + load_gsm8k(data_dir, args.gsm8k, split="eval"))
    by_id = {i.id: i for i in items}
    llm = read_cache(args.llm_answers) if args.llm_answers else None
    systems = [("stock", None)] + [tuple(s.split("=", 1)) for s in args.system]
    summaries, records = [], {}
    for name, adapter in systems:
        t0 = time.perf_counter()
        records[name] = answer(adapter, items, args.batch)
        s = summarize(name, records[name], llm, by_id)
        s["seconds"] = round(time.perf_counter() - t0, 1)
        summaries.append(s)
        print(f"{name}: {s['seconds']}s", file=sys.stderr, flush=True)
    print(table(summaries))
    curve = []
    if args.curve is not None:
        card = json.loads((args.curve / "nanoqa_card.json").read_text())
        sq_items = [i for i in items if i.dataset == "squad_v2"][: args.curve_squad]
        points = [{"step": 0, "seen": 0, "minutes": 0.0, "path": None}] + card["curve"][args.curve_every - 1::
                                                                                   args.curve_every]
        ids = {i.id for i in sq_items}
        for pt in points:
            # the stock model's answers are already in hand (step 0): only the snapshots are answered again
            recs = [r for r in records["stock"] if r["id"] in ids] if pt["path"] is None else \
                answer(pt["path"], sq_items, args.batch)
            s = summarize(f"step {pt['step']}", recs, None, by_id)
            curve.append({**pt, "answerable_f1": s["answerable_f1"], "unanswerable_abstained":
                          s["unanswerable_abstained"], "squad_f1": s["squad_f1"],
                          "auroc_mean_prob": s["auroc_squad"]["mean_prob"]})
            print(json.dumps(curve[-1]), file=sys.stderr, flush=True)
        final = next((n for n, a in systems if a and Path(a).resolve() == args.curve.resolve()), None)
        if final is not None:  # the finished run itself, answered above
            s = summarize("final", [r for r in records[final] if r["id"] in ids], None, by_id)
            curve.append({"step": card["steps"], "seen": card["examples_seen"],
                          "minutes": round(card["wall_seconds"] / 60, 2), "path": str(args.curve),
                          "answerable_f1": s["answerable_f1"], "unanswerable_abstained": s["unanswerable_abstained"],
                          "squad_f1": s["squad_f1"], "auroc_mean_prob": s["auroc_squad"]["mean_prob"]})
        print("\nLearning curve (first %d SQuAD evaluation questions):\n" % len(sq_items))
        print("| step | examples | minutes | SQuAD F1 | answerable F1 | unanswerable abstained | AUROC mean_prob |")
        print("|---|---|---|---|---|---|---|")
        for c in curve:
            print(f"| {c['step']} | {c['seen']} | {c['minutes']} | {fmt(c['squad_f1'])} | {fmt(c['answerable_f1'])} | "
                  f"{fmt(c['unanswerable_abstained'])} | {_a(c['auroc_mean_prob'])} |")
    plots(summaries, records, curve, args.out)
    (args.out / "nanoqa_results.json").write_text(json.dumps(
        {"summaries": summaries, "records": records, "curve": curve}, indent=1), encoding="utf-8")
    return 0


def plots(summaries: list[dict], records: dict[str, list[dict]], curve: list[dict], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot([0, 1], [0, 1], "k--", lw=1, label="perfect calibration")
    for s in summaries:
        recs = records[s["system"]]
        _, rows = ece([r["signals"]["mean_prob"] for r in recs], [r["correct"] for r in recs])
        ax.plot([r[0] for r in rows], [r[1] for r in rows], "o-", label=f"{s['system']} (ECE {s['ece_mean_prob']:.2f})")
    ax.set_xlabel("mean token probability (bin mean)")
    ax.set_ylabel("fraction correct")
    ax.set_title("Reliability of mean token probability")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "reliability.png", dpi=100)
    plt.close(fig)
    if curve:
        fig, ax = plt.subplots(figsize=(6, 4))
        xs = [c["seen"] for c in curve]
        for key, label in (("answerable_f1", "answerable F1"), ("unanswerable_abstained", "unanswerable abstained"),
                           ("auroc_mean_prob", "AUROC mean_prob")):
            ax.plot(xs, [c[key] if c[key] is not None else float("nan") for c in curve], "o-", label=label)
        ax.set_xlabel("training examples seen")
        ax.set_ylim(0, 1)
        ax.set_title("NanoQA learning curve (held-out SQuAD 2.0)")
        ax.legend()
        fig.tight_layout()
        fig.savefig(out / "curve.png", dpi=100)
        plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())
