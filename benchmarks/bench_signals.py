"""Which signals tell when the default SLM is right: hidden-state probes, context checks and a pre-generation gate.

Reads the labels written by ``benchmarks/label_signals.py`` (gold correctness, token probabilities, hidden-state
vectors of the default SLM on the calibration and evaluation splits), fits every gate on the calibration splits and
reports on the evaluation splits only:

* per data set: AUROC and ECE of each gate's P(correct), area under the quality-vs-LLM-calls curve, routing
  precision / recall / F1 (positive = the SLM is wrong, predicted = escalated), quality at the seed rule's
  LLM-call share, and SLM seconds per escalated query;
* the layer and pooling of the probe, per-task vs pooled gates, transfer (fit on SQuAD, test on NQ), a learning
  curve, and an ablation of the signal families;
* the pre-generation gate: share of escalated queries that skip the SLM, SLM time saved, quality lost.

LLM correctness per question comes from ``--llm-labels`` (JSONL with ``id`` and ``correct``) where given; without
it the LLM is counted right on every escalated question (an upper bound that favours no gate), and the report says
so. ``--write-default PATH`` writes the pooled token+probe gate (with the pre-generation gate) fitted on all
calibration labels, marked as shipped, for ``gates/shipped/``.

    python benchmarks/bench_signals.py --labels /work/labels/signals [--plot docs/img/signals.png]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

DATASETS = ("squad_v2", "nq_open", "gsm8k")
SEED_THRESHOLD = 0.6


# ---------------------------------------------------------------------------------------------------- labels
def load_labels(root: Path, dataset: str, split: str, vectors: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Rows of ``<dataset>.<split>.jsonl`` with their hidden vectors (numpy) under ``row["hidden"]``."""
    from safetensors.numpy import load_file

    path = root / f"{dataset}.{split}.jsonl"
    if not path.is_file():
        return []
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    shards: dict[int, dict[str, Any]] = {}
    for row in rows:
        shard = int(row["shard"])
        if shard not in shards:
            shards[shard] = load_file(str(root / f"{dataset}.{split}.{shard:04d}.safetensors"))
        tensors = shards[shard]
        names = vectors if vectors is not None else list(tensors)
        row["hidden"] = {k: tensors[k][row["row"]] for k in names if k in tensors} if row.get("has_hidden") else None
    return [r for r in rows if "error" not in r]


def messages(row: dict[str, Any]) -> list[dict[str, str]]:
    return [{"role": "user", "content": row["prompt"]}]


def generation(row: dict[str, Any], vectors: Sequence[str] = ()) -> Any:
    """The row as the SLMGeneration the router would have seen (hidden vectors limited to ``vectors``)."""
    from langchain_slm_router.signals import ConfidenceSignals
    from langchain_slm_router.slm import SLMGeneration

    hidden = {k: row["hidden"][k].tolist() for k in vectors} if vectors and row.get("hidden") else None
    return SLMGeneration(text=row["text"], token_ids=row.get("token_ids", []), token_probs=row["token_probs"],
                         token_entropies=row["token_entropies"],
                         signals=ConfidenceSignals.from_tokens(row["token_probs"], row["token_entropies"]),
                         input_tokens=row["input_tokens"], output_tokens=row["output_tokens"],
                         finished=row["finished"], latency_ms=row["slm_seconds"] * 1000.0, hidden=hidden)


def features(row: dict[str, Any]) -> dict[str, float]:
    from langchain_slm_router.gates.features import gate_features

    if "_features" not in row:
        row["_features"] = gate_features(row["token_probs"], row["token_entropies"], row["text"], row["finished"],
                                         messages(row))
    return row["_features"]


# ---------------------------------------------------------------------------------------------------- gates
def fit_gate(rows: list[dict[str, Any]], feature_names: Sequence[str], probe_vector: str | None,
             components: int | None = 64, c: float = 0.05, slm: Any = None) -> Any:
    from langchain_slm_router.gates import LearnedGate

    return LearnedGate.fit([features(r) for r in rows], [bool(r["correct"]) for r in rows],
                           feature_names=feature_names, hidden=[r["hidden"] for r in rows] if probe_vector else None,
                           probe_vector=probe_vector, probe_components=components, probe_c=c, slm=slm,
                           info={"labels": len(rows)})


def gate_p(gate: Any, rows: list[dict[str, Any]]) -> list[float]:
    """P(correct) of each row through the gate's own decide() (the router's path)."""
    vectors = [gate.probe.vector] if gate.probe is not None else []
    return [float(gate.decide(generation(r, vectors), messages(r)).p_correct) for r in rows]


# ---------------------------------------------------------------------------------------------------- metrics
def quality_curve(p: Sequence[float], slm_ok: Sequence[bool], llm_ok: Sequence[bool]) -> list[tuple[float, float]]:
    """(LLM-call share, quality) escalating the k least confident answers, k = 0..n."""
    order = sorted(range(len(p)), key=lambda i: p[i])
    n = len(p)
    quality = sum(slm_ok) / n
    out = [(0.0, quality)]
    for k, i in enumerate(order, 1):
        quality += (llm_ok[i] - slm_ok[i]) / n
        out.append((k / n, quality))
    return out


def area(curve: list[tuple[float, float]]) -> float:
    return sum((x1 - x0) * (y0 + y1) / 2 for (x0, y0), (x1, y1) in zip(curve, curve[1:]))


def quality_at_share(p: Sequence[float], slm_ok: Sequence[bool], llm_ok: Sequence[bool], share: float) -> float:
    curve = quality_curve(p, slm_ok, llm_ok)
    k = round(share * len(p))
    return curve[k][1]


def report(name: str, p: Sequence[float], rows: list[dict[str, Any]], llm: dict[str, bool], threshold: float,
           seed_share: float | None = None) -> dict[str, Any]:
    from langchain_slm_router.evaluation.metrics import auroc, expected_calibration_error, precision_recall_f1

    y = [bool(r["correct"]) for r in rows]
    llm_ok = [llm.get(r["id"], True) for r in rows]
    escalated = [pi < threshold for pi in p]
    prec, rec, f1 = precision_recall_f1(escalated, [not v for v in y])
    esc_secs = [r["slm_seconds"] for r, e in zip(rows, escalated) if e]
    out = {"gate": name, "n": len(rows), "right": sum(y), "auroc": auroc(p, y),
           "ece": expected_calibration_error(p, y) if 0.0 <= min(p) and max(p) <= 1.0 else None,
           "auqc": area(quality_curve(p, y, llm_ok)), "llm_share": sum(escalated) / len(rows),
           "quality": sum((lo if e else so) for so, lo, e in zip(y, llm_ok, escalated)) / len(rows),
           "precision": prec, "recall": rec, "f1": f1,
           "slm_s_per_escalated": sum(esc_secs) / len(esc_secs) if esc_secs else 0.0}
    if seed_share is not None:
        out["quality_at_seed_share"] = quality_at_share(p, y, llm_ok, seed_share)
    return out


def fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.3f}"
    return str(v)


def table(rows: list[dict[str, Any]], cols: Sequence[str]) -> str:
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(fmt(r.get(c)) for c in cols) + " |" for r in rows]
    return "\n".join(lines)


def squad_titles(data_dir: str | None) -> dict[str, str]:
    """SQuAD question id -> article title (the unit the splits are cut by)."""
    from langchain_slm_router.evaluation.datasets import default_data_dir, read_rows

    try:
        return {r["id"]: r["title"] for r in read_rows("squad_v2", data_dir or default_data_dir())}
    except Exception:  # noqa: BLE001 - no data folder: the CV table is left out
        return {}


def grouped_oof(rows: list[dict[str, Any]], groups: list[str], names: Sequence[str] | None,
                vec: str | None) -> list[float]:
    """Out-of-fold P(correct) with folds by group (GroupKFold, 4 folds); ``names=None``: the seed's mean_prob."""
    import numpy as np
    from sklearn.model_selection import GroupKFold

    if names is None:
        return [features(r)["mean_prob"] for r in rows]
    out = [0.0] * len(rows)
    for train, test in GroupKFold(n_splits=4).split(np.zeros(len(rows)), groups=groups):
        part = [rows[i] for i in train]
        if sum(r["correct"] for r in part) < 3:
            continue
        gate = fit_gate(part, names, vec, components=min(32, len(part) // 8))
        for i, p in zip(test, gate_p(gate, [rows[i] for i in test])):
            out[i] = p
    return out


def bootstrap_ci(p: Sequence[float], y: Sequence[bool], seed: int, n: int = 1000) -> tuple[float, float]:
    """95% percentile bootstrap interval of the AUROC."""
    from langchain_slm_router.evaluation.metrics import auroc

    rng = random.Random(seed)
    values = []
    for _ in range(n):
        idx = [rng.randrange(len(p)) for _ in p]
        a = auroc([p[i] for i in idx], [y[i] for i in idx])
        if a is not None:
            values.append(a)
    values.sort()
    return values[int(0.025 * len(values))], values[int(0.975 * len(values)) - 1]


# ---------------------------------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--labels", default="/work/labels/signals", help="folder written by label_signals.py")
    parser.add_argument("--llm-labels", default=None, help="JSONL of {id, correct} for the LLM's answers")
    parser.add_argument("--vector", default=None, help="probe vector (default: the best on the calib split CV)")
    parser.add_argument("--write-default", default=None, help="write the pooled gate (for gates/shipped/) here")
    parser.add_argument("--default-signals", choices=["token features (20)", "token + probe"],
                        default="token + probe",
                        help="which pooled gate --write-default writes (chosen by the leave-articles-out CV over "
                             "1,600 SQuAD labels: token + probe 0.70, token 0.68, probe 0.66; docs/benchmarks.md)")
    parser.add_argument("--plot", default=None, help="write the quality-vs-LLM-calls plot (PNG) here")
    parser.add_argument("--data-dir", default=None, help="data folder (SQuAD article titles for the grouped CV)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    from langchain_slm_router.gates import FEATURE_NAMES

    root = Path(args.labels)
    llm: dict[str, bool] = {}
    if args.llm_labels:
        for line in Path(args.llm_labels).read_text(encoding="utf-8").splitlines():
            if line.strip():
                row = json.loads(line)
                llm[row["id"]] = bool(row["correct"])
    calib = {d: load_labels(root, d, "calib") for d in DATASETS}
    evals = {d: load_labels(root, d, "eval") for d in DATASETS}
    pooled_calib = [r for d in DATASETS for r in calib[d]]
    for split, by in (("calib", calib), ("eval", evals)):
        print(f"labels ({split}): " + ", ".join(f"{d} {len(by[d])} ({sum(r['correct'] for r in by[d])} right)"
                                               for d in DATASETS))
    print(f"LLM correctness: {'from ' + args.llm_labels if llm else 'none given: the LLM is counted right on every escalated question'}")
    vectors = sorted(next(r["hidden"] for r in pooled_calib if r.get("hidden")))

    # 1. probe vector by 5-fold CV on the pooled calibration split (no evaluation data)
    from sklearn.model_selection import StratifiedKFold

    import numpy as np

    from langchain_slm_router.evaluation.metrics import auroc
    from langchain_slm_router.gates.probe import HiddenProbe

    y_cal = np.asarray([bool(r["correct"]) for r in pooled_calib])
    cv_rows = []
    for vec in vectors:
        H = np.asarray([r["hidden"][vec] for r in pooled_calib])
        oof = np.zeros(len(y_cal))
        for tr, te in StratifiedKFold(5, shuffle=True, random_state=args.seed).split(H, y_cal):
            probe = HiddenProbe.fit(H[tr], y_cal[tr], vec, components=64)
            oof[te] = [probe.score({vec: h}) for h in H[te]]
        cv_rows.append({"vector": vec, "cv_auroc_pooled": auroc(list(oof), list(y_cal))})
    cv_rows.sort(key=lambda r: -(r["cv_auroc_pooled"] or 0))
    print("\n## Probe vector (5-fold CV AUROC on the pooled calibration split)\n")
    print(table(cv_rows, ["vector", "cv_auroc_pooled"]))
    best = args.vector or cv_rows[0]["vector"]
    print(f"\nprobe vector: {best}")

    token_names = list(FEATURE_NAMES)
    seed_shares = {}
    results: list[dict[str, Any]] = []
    variants = {
        "token features (20)": (token_names, None),
        "probe only": ([], best),
        "token + probe": (token_names, best),
    }
    fitted = {name: fit_gate(pooled_calib, names, vec) for name, (names, vec) in variants.items()}
    mixed_eval = [r for d in DATASETS for r in evals[d]]
    curves: dict[str, Any] = {}
    for d, rows in [*evals.items(), ("mixed (squad+nq+gsm8k)", mixed_eval)]:
        if not rows:
            continue
        seed_p = [features(r)["mean_prob"] for r in rows]
        seed = report("mean_prob >= 0.6 (seed)", seed_p, rows, llm, SEED_THRESHOLD)
        seed_shares[d] = seed["llm_share"]
        seed["quality_at_seed_share"] = seed["quality"]
        results.append({"dataset": d, **seed})
        curves[d] = {"mean_prob (seed)": quality_curve(seed_p, [r["correct"] for r in rows],
                                                       [llm.get(r["id"], True) for r in rows])}
        for name, gate in fitted.items():
            p = gate_p(gate, rows)
            results.append({"dataset": d, **report(f"pooled {name}", p, rows, llm, 0.5, seed["llm_share"])})
            curves[d][name] = quality_curve(p, [r["correct"] for r in rows], [llm.get(r["id"], True) for r in rows])
    print("\n## Gates on the evaluation splits (pooled gates fitted on all calibration labels; threshold P >= 0.5)\n")
    cols = ["dataset", "gate", "n", "right", "auroc", "ece", "auqc", "quality_at_seed_share", "llm_share", "quality",
            "precision", "recall", "f1", "slm_s_per_escalated"]
    print(table(results, cols))

    # 1b. SQuAD by article: leave-articles-out cross-validation over every SQuAD label (calibration and evaluation
    # articles alike; each question is scored by a gate that never saw its article), with a bootstrap CI
    titles = squad_titles(args.data_dir)
    squad_all = calib["squad_v2"] + evals["squad_v2"]
    if titles and sum(r["correct"] for r in squad_all) >= 8:
        cv = []
        for name, (names, vec) in {"mean_prob (seed)": (None, None), **variants}.items():
            p = grouped_oof(squad_all, [titles[r["id"].split(":", 1)[1]] for r in squad_all], names, vec)
            y = [bool(r["correct"]) for r in squad_all]
            lo, hi = bootstrap_ci(p, y, args.seed)
            cv.append({"gate": name, "n": len(y), "right": sum(y), "auroc": auroc(p, y), "95% CI": f"{lo:.2f}-{hi:.2f}"})
        print("\n## SQuAD 2.0, leave-articles-out CV over all SQuAD labels (8 articles, 4 folds)\n")
        print(table(cv, ["gate", "n", "right", "auroc", "95% CI"]))

    # 2. per-task vs pooled, and transfer
    rows_pt = []
    for d in ("squad_v2", "nq_open"):
        if len(calib[d]) < 20 or not evals[d] or sum(r["correct"] for r in calib[d]) < 3:
            rows_pt.append({"fit on": d, "test on": d, "note": "too few right answers to fit"})
            continue
        g = fit_gate(calib[d], token_names, best)
        for t in ("squad_v2", "nq_open"):
            if evals[t]:
                rows_pt.append({"fit on": d, "test on": t, "n": len(evals[t]),
                                "auroc": auroc(gate_p(g, evals[t]), [r["correct"] for r in evals[t]])})
    for t in ("squad_v2", "nq_open"):
        if evals[t]:
            rows_pt.append({"fit on": "pooled", "test on": t, "n": len(evals[t]),
                            "auroc": auroc(gate_p(fitted["token + probe"], evals[t]),
                                           [r["correct"] for r in evals[t]])})
    print("\n## Per-task vs pooled, and transfer (token + probe; AUROC on evaluation splits)\n")
    print(table(rows_pt, ["fit on", "test on", "n", "auroc", "note"]))

    # 3. learning curve (pooled, token + probe), on SQuAD eval
    rng = random.Random(args.seed)
    lc = []
    squad_eval = evals["squad_v2"]
    for size in (100, 300, 1000, len(pooled_calib)):
        if size > len(pooled_calib) or not squad_eval:
            continue
        sample = rng.sample(pooled_calib, size)
        if sum(r["correct"] for r in sample) < 5:
            continue
        row = {"labels": size}
        for name in ("token features (20)", "token + probe"):
            names, vec = variants[name]
            g = fit_gate(sample, names, vec, components=min(64, size // 4))
            row[name] = auroc(gate_p(g, squad_eval), [r["correct"] for r in squad_eval])
        lc.append(row)
    print("\n## Learning curve (pooled fit on a random subset of calibration labels; AUROC on SQuAD eval)\n")
    print(table(lc, ["labels", "token features (20)", "token + probe"]))

    # 4. ablation of signal families (pooled; AUROC on SQuAD eval and mixed eval)
    context = ["answer_in_context", "question_in_context", "abstain_vs_context"]
    abl = {"all (token + context + probe)": (token_names, best),
           "- probe": (token_names, None),
           "- context checks": ([n for n in token_names if n not in context], best),
           "- token probabilities": ([n for n in token_names if not n.endswith("prob") and n not in
                                      ("mean_entropy", "mean_logprob")], best)}
    ab_rows = []
    for name, (names, vec) in abl.items():
        g = fit_gate(pooled_calib, names, vec)
        row = {"signals": name}
        for d, rows in (("squad_v2", evals["squad_v2"]), ("mixed", mixed_eval)):
            if rows:
                row[f"auroc {d}"] = auroc(gate_p(g, rows), [r["correct"] for r in rows])
        ab_rows.append(row)
    print("\n## Ablation (pooled gates; AUROC on evaluation splits)\n")
    print(table(ab_rows, ["signals", "auroc squad_v2", "auroc mixed"]))

    # 5. pre-generation gate
    from langchain_slm_router.gates.pregen import PreGenerationGate, embed_questions, question_text

    started = time.perf_counter()
    emb_cal = embed_questions([question_text(messages(r)) for r in pooled_calib])
    pre = PreGenerationGate.fit([messages(r) for r in pooled_calib], [r["correct"] for r in pooled_calib],
                                embeddings=emb_cal, seed=args.seed)
    emb_eval = embed_questions([question_text(messages(r)) for r in mixed_eval]) if mixed_eval else []
    embed_ms = (time.perf_counter() - started) * 1000.0 / max(1, len(pooled_calib) + len(mixed_eval))
    pre_rows = []
    main_gate = fitted["token + probe"]
    p_after = gate_p(main_gate, mixed_eval) if mixed_eval else []
    for floor in (0.01, 0.02, 0.05):
        for d in (*DATASETS, "mixed"):
            rows = mixed_eval if d == "mixed" else [r for r in mixed_eval if r["dataset"] == d]
            if not rows:
                continue
            idx = [i for i, r in enumerate(mixed_eval) if d == "mixed" or r["dataset"] == d]
            pre_p = [pre.p_correct(messages(mixed_eval[i]), emb_eval[i]) for i in idx]
            skip = [pp < floor for pp in pre_p]
            keep_after = [p_after[i] >= 0.5 for i in idx]
            y = [bool(mixed_eval[i]["correct"]) for i in idx]
            llm_ok = [llm.get(mixed_eval[i]["id"], True) for i in idx]
            secs = [mixed_eval[i]["slm_seconds"] for i in idx]
            escalated_without = [not k for k in keep_after]
            escalated_with = [s or not k for s, k in zip(skip, keep_after)]
            q_without = sum(lo if e else so for so, lo, e in zip(y, llm_ok, escalated_without)) / len(idx)
            q_with = sum(lo if e else so for so, lo, e in zip(y, llm_ok, escalated_with)) / len(idx)
            slm_esc_without = sum(s for s, e in zip(secs, escalated_without) if e)
            slm_esc_with = sum(s for s, e, sk in zip(secs, escalated_with, skip) if e and not sk)
            pre_rows.append({"skip below": floor, "dataset": d, "n": len(idx), "skipped": sum(skip),
                             "skipped right": sum(s and yy for s, yy in zip(skip, y)),
                             "SLM s saved on escalated %": 100 * (1 - slm_esc_with / slm_esc_without)
                             if slm_esc_without else None,
                             "quality without": q_without, "quality with": q_with})
    print(f"\n## Pre-generation gate (MiniLM question embedding + query shape; {embed_ms:.1f} ms/query to embed)\n")
    print(table(pre_rows, ["skip below", "dataset", "n", "skipped", "skipped right", "SLM s saved on escalated %",
                           "quality without", "quality with"]))

    if args.plot and curves:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, len(curves), figsize=(5 * len(curves), 4), squeeze=False)
        for ax, (d, named) in zip(axes[0], curves.items()):
            for name, curve in named.items():
                ax.plot([x for x, _ in curve], [q for _, q in curve], label=name)
            ax.set_title(d)
            ax.set_xlabel("LLM-call share")
            ax.set_ylabel("quality")
        axes[0][0].legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(args.plot, dpi=90)
        print(f"\nplot written to {args.plot}")

    if args.write_default:
        from langchain_slm_router.slm import LocalSLM

        slm = LocalSLM()
        names, vec = variants[args.default_signals]
        gate = fit_gate(pooled_calib, names, vec, slm=slm)
        gate = gate.model_copy(update={"pre": pre, "info": {
            **gate.info, "shipped": True, "signals": args.default_signals,
            "fitted_on": {d: len(calib[d]) for d in DATASETS},
            "label": "gold correctness of LocalSLM() answers (benchmarks/label_signals.py), calibration splits",
            "evaluation": [r for r in results if r["gate"] == f"pooled {args.default_signals}"]}})
        gate.save(args.write_default)
        print(f"\ndefault gate written to {args.write_default}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
