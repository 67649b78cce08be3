"""Learned gate vs threshold gates vs random vs oracle, on evaluation splits only; and early exit's savings.

For each data set the harness runs the SLM (default ``LocalSLM``) and the LLM on a calibration split and a
disjoint evaluation split (SQuAD 2.0 is split by article). Gates are fit and thresholds chosen on the calibration
split only; every number below is measured on the evaluation split:

* AUROC for "the SLM's answer is right" and expected calibration error (ECE) of each gate's score;
* area under the quality-vs-LLM-calls curve (AUC, LLM share 0..1), quality at <= 30% LLM calls (threshold chosen
  on the calibration split for that target), routing precision/recall/F1 of "escalate" against "SLM wrong" at
  the gate's default threshold (0.6 mean probability; P(correct) 0.5);
* the learned gate fit on LLM-agreement labels (no gold) next to the one fit on gold labels;
* early exit: SLM seconds on the queries the 0.6 rule escalates, generated with and without early exit.

The LLM is the benchmark's local Qwen2.5-Coder-0.5B-Instruct GGUF (``benchmarks/fetch_llm_weights.py``) on
llama.cpp, served through the project's Ollama-protocol server and called with the real ``ChatOllama``.

Usage::

    python benchmarks/fetch_llm_weights.py
    python benchmarks/bench_gate.py [--data-dir ../shared/data] [--datasets squad_v2,nq_open,gsm8k,mixed]
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from langchain_slm_router.errors import DataUnavailableError
from langchain_slm_router.evaluation import systems
from langchain_slm_router.evaluation.cache import DEFAULT_CACHE_DIR, GenerationCache
from langchain_slm_router.evaluation.calibration import CalibrationTarget, calibrate
from langchain_slm_router.evaluation.datasets import load_dataset
from langchain_slm_router.evaluation.harness import Harness, HarnessConfig
from langchain_slm_router.evaluation.metrics import auroc, expected_calibration_error, precision_recall_f1
from langchain_slm_router.gates import GatePolicy, LearnedGate, gate_features
from langchain_slm_router.gates.training import record_examples
from langchain_slm_router.llm_weights import weights_path

DEFAULT_SIZES = {"squad_v2": (100, 100), "nq_open": (100, 100), "gsm8k": (24, 24), "mixed": (40, 40)}
LLM_GGUF = weights_path("qwen2.5-coder-0.5b")


def _quality_curve(records: Sequence[dict], score: Callable[[dict], float | None]) -> list[tuple[float, float]]:
    """(LLM share, mean quality) when the k least confident SLM answers are escalated, k = 0..n."""
    n = len(records)
    base = []  # records the math engine answers never reach the gate
    gated = []
    for r in records:
        if r.get("math"):
            base.append(systems.router(r, 0.0).score)
        else:
            s = score(r)
            gated.append((float("-inf") if s is None else s, r))
    gated.sort(key=lambda t: t[0])
    slm_q = [systems.always_slm(r).score if systems.record_generation(r) else 0.0 for _, r in gated]
    llm_q = [systems.always_llm(r).score for _, r in gated]
    points = []
    for k in range(len(gated) + 1):  # escalate the k lowest-scored
        quality = (sum(base) + sum(llm_q[:k]) + sum(slm_q[k:])) / max(1, n)
        points.append((k / max(1, n), quality))
    return points


def _auc(points: Sequence[tuple[float, float]]) -> float:
    area = 0.0
    for (x0, y0), (x1, y1) in zip(points, points[1:]):
        area += (x1 - x0) * (y0 + y1) / 2
    span = points[-1][0] - points[0][0]
    return area / span if span > 0 else points[0][1]


def _gates(calib: Sequence[dict]) -> dict[str, Any]:
    """The compared gates: (scorer over a record, default threshold, Gate for calibration or None)."""
    feats, gold = record_examples(calib)
    _, agree = record_examples(calib, label="agreement")
    out: dict[str, Any] = {
        "mean_prob >= t": (lambda r: _sig(r, "mean_prob"), 0.6, GatePolicy()),
        "min_prob >= t": (lambda r: _sig(r, "min_prob"), 0.2,
                          GatePolicy(min_mean_prob=None, min_min_prob=0.2)),
    }
    for name, labels, model in (("learned (logistic, gold)", gold, "logistic"),
                                ("learned (trees, gold)", gold, "gbt"),
                                ("learned (logistic, LLM agreement)", agree, "logistic")):
        try:
            gate = LearnedGate.fit(feats, labels, model=model, seed=0)
        except ValueError as exc:  # a calibration split with no right (or no wrong) answer
            print(f"  {name}: not fit ({exc})")
            continue
        out[name] = (lambda r, g=gate: _p(g, r), 0.5, gate)
    rng = random.Random(0)
    noise: dict[str, float] = {}
    out["random"] = (lambda r: noise.setdefault(r["id"], rng.random()), 0.5, None)
    out["oracle"] = (lambda r: float(bool((r.get("slm") or {}).get("correct"))), 0.5, None)
    return out


def _sig(record: dict, name: str) -> float | None:
    s = systems.slm_signals(record)
    return None if s is None else float(getattr(s, name))


def _p(gate: LearnedGate, record: dict) -> float | None:
    gen = systems.record_generation(record)
    if gen is None:
        return None
    f = gate_features(gen.token_probs, gen.token_entropies, gen.text, gen.finished, systems.record_messages(record))
    return gate.p_correct(f)


def evaluate(name: str, calib: list[dict], evals: list[dict]) -> list[dict[str, Any]]:
    rows = []
    gated = [r for r in evals if not r.get("math") and systems.record_generation(r) is not None]
    right = [bool(r["slm"].get("correct")) for r in gated]
    for gname, (score, default_t, gate) in _gates(calib).items():
        scores = [score(r) for r in gated]
        curve = _quality_curve(evals, score)
        probs = [min(1.0, max(0.0, s)) for s in scores] if gname != "min_prob >= t" else None
        escalate = [s < default_t for s in scores]
        p, rc, f1 = precision_recall_f1(escalate, [not y for y in right])
        row = {"dataset": name, "gate": gname, "auroc": auroc(scores, right),
               "ece": expected_calibration_error(probs, right) if probs is not None else None,
               "auc_quality_vs_llm": _auc(curve), "routing_p": p, "routing_r": rc, "routing_f1": f1}
        if gate is not None:
            res = calibrate(calib, evals, CalibrationTarget(max_llm_share=0.3), gate=gate)
            row.update(q_at_30=res.heldout_quality, share_at_30=res.heldout_llm_share,
                       threshold_at_30=res.choice.threshold)
        elif gname == "oracle":
            best = max((q for s, q in curve if s <= 0.3 + 1e-9), default=None)
            row.update(q_at_30=best, share_at_30=None, threshold_at_30=None)
        rows.append(row)
        row["curve"] = curve
    llm_q = sum(systems.always_llm(r).score for r in evals) / max(1, len(evals))
    slm_q = sum(systems.always_slm(r).score for r in evals) / max(1, len(evals))
    for row in rows:
        row.update(llm_quality=llm_q, slm_quality=slm_q, slm_right=sum(right) / max(1, len(right)), n=len(evals))
    return rows


def learning_curve(calib: Sequence[dict], evals: Sequence[dict], sizes: Sequence[int] = (20, 40, 80, 160, 320)
                   ) -> list[dict[str, Any]]:
    """AUROC / ECE on ``evals`` of learned gates fit on the first k calibration records (all data sets pooled),
    with gold and with LLM-agreement labels, next to the mean-probability signal."""
    order = list(calib)
    random.Random(0).shuffle(order)
    eval_feats, eval_right = record_examples(evals)
    mean_auc = auroc([f["mean_prob"] for f in eval_feats], eval_right)
    rows = []
    for k in [k for k in sizes if k < len(order)] + [len(order)]:
        row: dict[str, Any] = {"examples": k, "mean_prob_auroc": mean_auc}
        for label in ("gold", "agreement"):
            feats, labels = record_examples(order[:k], label=label)
            try:
                gate = LearnedGate.fit(feats, labels, seed=0)
            except ValueError:
                row[f"{label}_auroc"] = row[f"{label}_ece"] = None
                continue
            p = [gate.p_correct(f) for f in eval_feats]
            row[f"{label}_auroc"] = auroc(p, eval_right)
            row[f"{label}_ece"] = expected_calibration_error(p, eval_right)
        rows.append(row)
    return rows


def early_exit(slm: Any, evals: Sequence[dict], limit: int) -> dict[str, Any]:
    gate = GatePolicy()
    escalated = [r for r in evals if not r.get("math") and systems.record_generation(r) is not None
                 and not systems.gate_keeps(r, 0.6)][:limit]
    full_s = early_s = 0.0
    same = exited = tokens_full = tokens_early = 0
    for r in escalated:
        msgs = systems.record_messages(r)
        t = time.perf_counter()
        f = slm.generate(msgs)
        full_s += time.perf_counter() - t
        t = time.perf_counter()
        e = slm.generate_batch([msgs], early_exit=gate.early_exit())[0]
        early_s += time.perf_counter() - t
        same += gate.decide(f).keep == gate.decide(e).keep
        exited += e.early_exit
        tokens_full += f.output_tokens
        tokens_early += e.output_tokens
    n = max(1, len(escalated))
    return {"n": len(escalated), "slm_s_full": full_s, "slm_s_early": early_s,
            "saved": 1 - early_s / full_s if full_s else None, "exited": exited / n,
            "decisions_same": same / n, "tokens_full": tokens_full, "tokens_early": tokens_early}


def plot(rows: list[dict], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    for name in sorted({r["dataset"] for r in rows}):
        fig, ax = plt.subplots(figsize=(5.5, 4))
        for row in (r for r in rows if r["dataset"] == name):
            xs, ys = zip(*row["curve"])
            ax.plot(xs, ys, label=row["gate"], lw=1.4, ls="--" if row["gate"] in ("random", "oracle") else "-")
        llm_q = next(r for r in rows if r["dataset"] == name)["llm_quality"]
        ax.axhline(llm_q, color="grey", lw=0.8, ls=":", label="always-LLM")
        ax.set_xlabel("share of queries sent to the LLM")
        ax.set_ylabel("quality (evaluation split)")
        ax.set_title(f"gates on {name}")
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(out / f"bench_gate_{name}.png", dpi=110)
        plt.close(fig)


def _fmt(v: Any) -> str:
    return "n/a" if v is None else (f"{v:.3f}" if isinstance(v, float) else str(v))


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--datasets", default="squad_v2,nq_open,gsm8k,mixed")
    ap.add_argument("--sizes", default=None, help="name=calib:eval,... (default: squad 100:100, nq 100:100, "
                                                   "gsm8k 24:24, mixed 40:40)")
    ap.add_argument("--llm-gguf", default=str(LLM_GGUF))
    ap.add_argument("--early-exit-n", type=int, default=30)
    ap.add_argument("--out", default="bench_out/gate")
    ap.add_argument("--plots", default="docs/img")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--from-records", nargs="*", default=None,
                    help="re-score saved <name>_records.json files of an earlier run (no model is run; no early exit)")
    args = ap.parse_args(argv)
    if args.from_records is not None:
        rows, pooled_calib, pooled_eval = [], [], []
        for path in args.from_records:
            saved = json.loads(Path(path).read_text())
            rows += evaluate(Path(path).name.removesuffix("_records.json"), saved["calib"], saved["eval"])
            pooled_calib += saved["calib"]
            pooled_eval += saved["eval"]
        report(rows, {}, "re-scored from saved records", Path(args.plots))
        print("\nLearning curve (all data sets pooled; AUROC / ECE on the pooled evaluation splits):\n")
        print("| calibration examples | mean_prob AUROC | learned, gold: AUROC / ECE | learned, LLM agreement: AUROC / ECE |")
        print("|---|---|---|---|")
        for r in learning_curve(pooled_calib, pooled_eval):
            print(f"| {r['examples']} | {_fmt(r['mean_prob_auroc'])} | {_fmt(r.get('gold_auroc'))} / "
                  f"{_fmt(r.get('gold_ece'))} | {_fmt(r.get('agreement_auroc'))} / {_fmt(r.get('agreement_ece'))} |")
        return 0

    from langchain_ollama import ChatOllama

    from langchain_slm_router.slm import LlamaCppSLM, LocalSLM
    from langchain_slm_router.testing import OllamaProtocolServer

    sizes = dict(DEFAULT_SIZES)
    for part in filter(None, (args.sizes or "").split(",")):
        k, v = part.split("=")
        c, e = v.split(":")
        sizes[k] = (int(c), int(e))
    names = [n for n in args.datasets.split(",") if n]
    try:
        data = {n: (load_dataset(n, args.data_dir, sizes[n][0], args.seed, "calib"),
                    load_dataset(n, args.data_dir, sizes[n][1], args.seed, "eval")) for n in names}
    except DataUnavailableError as exc:
        print(f"bench_gate: {exc}", file=sys.stderr)
        return 2
    if not Path(args.llm_gguf).is_file():
        print(f"bench_gate: the benchmark LLM {args.llm_gguf} is missing; run python benchmarks/fetch_llm_weights.py",
              file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    slm = LocalSLM()
    llm_backend = LlamaCppSLM(model_path=args.llm_gguf, max_new_tokens=128, n_ctx=4096)
    cache = GenerationCache(Path(DEFAULT_CACHE_DIR))
    rows: list[dict] = []
    exits: dict[str, dict] = {}
    started = time.time()
    with OllamaProtocolServer({"qwen-0.5b": llm_backend}) as server:
        def factory(num_predict: int) -> Any:
            return ChatOllama(model="qwen-0.5b", base_url=server.base_url, num_predict=num_predict, temperature=0)

        harness = Harness(slm, factory, HarnessConfig(llm_id=f"qwen2.5-coder-0.5b-llamacpp:{Path(args.llm_gguf).name}",
                                                      live_router=False), cache=cache)
        for name, (calib_items, eval_items) in data.items():
            calib = harness.run(calib_items, desc=f"{name} calib")
            evals = harness.run(eval_items, desc=f"{name} eval")
            (out / f"{name}_records.json").write_text(json.dumps({"calib": calib, "eval": evals}))
            rows += evaluate(name, calib, evals)
            if name in ("squad_v2", "nq_open", "mixed"):
                exits[name] = early_exit(slm.model_copy(update={"max_new_tokens": 24}), evals, args.early_exit_n)
    load = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    (out / "summary.json").write_text(json.dumps({"rows": [{k: v for k, v in r.items() if k != "curve"}
                                                           for r in rows], "early_exit": exits}, indent=1))
    report(rows, exits, f"{time.time() - started:.0f} s; load: {load}", Path(args.plots))
    return 0


def report(rows: list[dict], exits: dict[str, dict], note: str, plots: Path) -> None:
    """Print the tables and write the plots."""
    print(f"\n# bench_gate ({time.strftime('%Y-%m-%d')}, {note})\n")
    print("| data set | gate | AUROC | ECE | AUC quality/LLM | quality at <=30% LLM (share) | routing P / R / F1 |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        q30 = f"{_fmt(r.get('q_at_30'))} ({_fmt(r.get('share_at_30'))})"
        print(f"| {r['dataset']} (n={r['n']}, SLM right {r['slm_right']:.0%}, LLM q {r['llm_quality']:.3f}) | "
              f"{r['gate']} | {_fmt(r['auroc'])} | {_fmt(r['ece'])} | {_fmt(r['auc_quality_vs_llm'])} | {q30} | "
              f"{_fmt(r['routing_p'])} / {_fmt(r['routing_r'])} / {_fmt(r['routing_f1'])} |")
    print("\n| data set | escalated queries | SLM s without early exit | with | saved | exited early | "
          "same decisions | tokens without / with |")
    print("|---|---|---|---|---|---|---|---|")
    for name, e in exits.items():
        print(f"| {name} | {e['n']} | {e['slm_s_full']:.1f} | {e['slm_s_early']:.1f} | {_fmt(e['saved'])} | "
              f"{e['exited']:.0%} | {e['decisions_same']:.0%} | {e['tokens_full']} / {e['tokens_early']} |")
    plots.mkdir(parents=True, exist_ok=True)
    plot(rows, plots)


if __name__ == "__main__":
    raise SystemExit(main())
