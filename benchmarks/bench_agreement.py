"""Sampled agreement as a gate signal (issue 18): what it adds to the learned gate, and what it costs.

Usage::

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/bench_agreement.py --out /work/labels/agreement \\
        [--dataset squad_v2] [--calib 200] [--eval 200] [--k 4] [--temperature 1.0] [--data-dir DIR]

The default SLM (``LocalSLM()``, the NanoQA adapter) answers the first ``--calib`` calibration and ``--eval``
evaluation questions of the harness's seeded splits (evaluation articles are never used for fitting) greedily and
with ``--k`` sampled answers per question (``LocalSLM(samples=K)``: one batched generation of K rows per prompt).
Every answer is scored against gold with the harness's scoring; rows (features, the probe vector, correctness,
seconds) go to ``<out>/<dataset>.<split>.jsonl`` as they come, so a second run resumes.

Then, on the evaluation split, it prints the AUROC for "the answer is right" of:
- mean token probability (the seed rule's signal), ``sample_agreement`` and ``sample_distinct`` alone;
- learned gates fitted on the calibration rows (logistic + isotonic, the shipped gate's recipe): token features,
  token + probe (``answer_mean@L15``), and each of those plus the two sampled-agreement features;
and the cost: SLM seconds per question greedy alone against greedy + K samples, measured on the same questions,
alternating, in this process.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PROBE_VECTOR = "answer_mean@L15"


def label(slm: Any, items: list[Any], path: Path, batch: int) -> list[dict[str, Any]]:
    """Rows for ``items`` (read from ``path`` when already there, generated and appended otherwise)."""
    from tqdm.auto import tqdm

    from langchain_slm_router.evaluation.scoring import score_answer
    from langchain_slm_router.gates.features import generation_features

    rows = {}
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                row = json.loads(line)
                rows[row["id"]] = row
    todo = [it for it in items if it.id not in rows]
    with path.open("a", encoding="utf-8") as fh, tqdm(total=len(todo), desc=path.stem, unit="q") as bar:
        for start in range(0, len(todo), batch):
            chunk = todo[start:start + batch]
            convs = [[{"role": "user", "content": it.prompt}] for it in chunk]
            started = time.perf_counter()
            gens = slm.generate_batch(convs)
            seconds = (time.perf_counter() - started) / len(chunk)
            for it, conv, gen in zip(chunk, convs, gens):
                if isinstance(gen, Exception):
                    continue
                score = score_answer(it.dataset, gen.text, it.answers, it.unanswerable)
                row = {"id": it.id, "text": gen.text, "samples": gen.samples, "correct": bool(score.correct),
                       "features": generation_features(gen, conv), "seconds": round(seconds, 4),
                       "hidden": {PROBE_VECTOR: (gen.hidden or {}).get(PROBE_VECTOR)}}
                rows[it.id] = row
                fh.write(json.dumps(row) + "\n")
            fh.flush()
            bar.update(len(chunk))
    return [rows[it.id] for it in items if it.id in rows]


def cost(k: int, items: list[Any], max_new: int, n: int) -> tuple[float, float]:
    """Seconds per question greedy alone and greedy + k samples, on the same ``n`` questions, alternating."""
    from langchain_slm_router.slm import LocalSLM

    greedy, sampled = LocalSLM(max_new_tokens=max_new), LocalSLM(max_new_tokens=max_new, samples=k)
    times = {0: 0.0, k: 0.0}
    for it in items[:n]:
        conv = [{"role": "user", "content": it.prompt}]
        for key, slm in ((0, greedy), (k, sampled)):
            started = time.perf_counter()
            slm.generate_batch([conv])
            times[key] += time.perf_counter() - started
    return times[0] / n, times[k] / n


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for the labelled rows (resumable)")
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--dataset", default="squad_v2")
    parser.add_argument("--calib", type=int, default=200)
    parser.add_argument("--eval", type=int, default=200)
    parser.add_argument("--k", type=int, default=4)
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--batch", type=int, default=4, help="prompts per generate call")
    parser.add_argument("--cost-n", type=int, default=20, help="questions for the cost comparison")
    args = parser.parse_args(argv)

    import numpy as np
    from sklearn.metrics import roc_auc_score

    from langchain_slm_router.errors import DataUnavailableError
    from langchain_slm_router.evaluation.datasets import default_data_dir, load_dataset
    from langchain_slm_router.evaluation.harness import DEFAULT_MAX_NEW_TOKENS
    from langchain_slm_router.gates import LearnedGate
    from langchain_slm_router.gates.features import FEATURE_NAMES, SAMPLE_FEATURE_NAMES
    from langchain_slm_router.gates.learned import PROBE_FEATURE
    from langchain_slm_router.slm import LocalSLM

    try:
        data_dir = args.data_dir or default_data_dir()
        calib_items = load_dataset(args.dataset, data_dir, limit=args.calib, split="calib")
        eval_items = load_dataset(args.dataset, data_dir, limit=args.eval, split="eval")
    except DataUnavailableError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    max_new = DEFAULT_MAX_NEW_TOKENS.get(args.dataset, 24)
    slm = LocalSLM(max_new_tokens=max_new, samples=args.k, sample_temperature=args.temperature,
                   max_batch_size=max(8, args.k))
    args.out.mkdir(parents=True, exist_ok=True)
    stem = f"{args.dataset}.k{args.k}.t{args.temperature:g}"
    calib = label(slm, calib_items, args.out / f"{stem}.calib.jsonl", args.batch)
    evals = label(slm, eval_items, args.out / f"{stem}.eval.jsonl", args.batch)
    y_cal = [r["correct"] for r in calib]
    y_ev = np.asarray([r["correct"] for r in evals], dtype=int)
    print(f"\n# Sampled agreement: {slm.model_name}, {args.dataset}, K={args.k} at T={args.temperature:g}; "
          f"calibration {len(calib)} ({sum(y_cal)} right), evaluation {len(evals)} ({int(y_ev.sum())} right)\n")
    print("| signal or gate (fitted on the calibration split) | AUROC on the evaluation split |")
    print("|---|---:|")
    for name in ("mean_prob", *SAMPLE_FEATURE_NAMES):
        score = [r["features"][name] for r in evals]
        sign = -1.0 if name == "sample_distinct" else 1.0  # more distinct answers: less sure
        auroc = roc_auc_score(y_ev, [sign * s for s in score])
        print(f"| {name}{' (negated)' if sign < 0 else ''} alone | {auroc:.3f} |")
    token, agreement = list(FEATURE_NAMES), list(SAMPLE_FEATURE_NAMES)
    variants = (("token features", token, False), ("token + agreement", token + agreement, False),
                ("token + probe", token, True), ("token + probe + agreement", token + agreement, True))
    for label_, names, probe in variants:
        gate = LearnedGate.fit([r["features"] for r in calib], y_cal, feature_names=names,
                               hidden=[r["hidden"] for r in calib] if probe else None,
                               probe_vector=PROBE_VECTOR if probe else None, seed=0)
        scores = []
        for r in evals:
            feats = dict(r["features"])
            if gate.probe is not None:
                feats[PROBE_FEATURE] = gate.probe.score(r["hidden"])
            scores.append(gate.score(feats))
        print(f"| {label_} | {roc_auc_score(y_ev, scores):.3f} |")
    greedy_s, sampled_s = cost(args.k, eval_items, max_new, args.cost_n)
    print(f"\nCost, {args.cost_n} evaluation questions one by one, alternating: greedy {greedy_s:.2f} s/question, "
          f"greedy + {args.k} samples {sampled_s:.2f} s/question ({sampled_s / greedy_s:.2f}x).")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
