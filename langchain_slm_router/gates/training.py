"""Training data for a learned gate: labelled evaluation records, or a deployment's own traffic.

Two sources of (features, label) pairs:

* **gold labels** — the evaluation harness's records (``slm-router eval --json``): label = the SLM's answer was
  scored correct. Queries the math engine answered are left out (the gate never sees them).
* **agreement labels, no gold needed** — every escalated query already has the SLM's draft and the LLM's answer.
  With ``SLMRouter(traffic_log="pairs.jsonl")`` the router appends one line per such query
  (:class:`~langchain_slm_router.traffic.TrafficLog`);
  the label is :func:`agreement_label`: the two answers agree when their SQuAD-normalised texts match, or their
  token F1 is at least ``bar`` (default 0.5), or both abstain. The LLM stands in for the truth, so such a gate
  learns "would the LLM have said the same", which is what escalation buys.

``slm-router train-gate`` (:func:`main`) fits a :class:`~langchain_slm_router.gates.LearnedGate` from either source
and writes its JSON file.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from langchain_slm_router.gates.features import gate_features
from langchain_slm_router.traffic import TrafficLog

AGREEMENT_F1_BAR = 0.5
"""Token F1 at or above which the SLM's draft and the LLM's answer count as agreeing."""


def agreement_label(slm_text: str, llm_text: str, bar: float = AGREEMENT_F1_BAR) -> bool:
    """Whether the SLM's draft agrees with the LLM's answer (normalised match, token F1 >= ``bar``, both abstain)."""
    from langchain_slm_router.text import clean_reply, is_abstention, normalize_answer, token_f1

    slm_abstains, llm_abstains = is_abstention(slm_text), is_abstention(llm_text)
    if slm_abstains or llm_abstains:
        return slm_abstains and llm_abstains
    a, b = clean_reply(slm_text), clean_reply(llm_text)
    return normalize_answer(a) == normalize_answer(b) or token_f1(a, b) >= bar


def read_jsonl(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The JSON objects of a JSONL file (blank lines skipped); a bad line is a ValueError naming it."""
    out = []
    with Path(path).open(encoding="utf-8") as fh:
        for i, line in enumerate(fh, 1):
            if line.strip():
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise ValueError(f"{path}:{i}: not JSON ({exc})") from exc
    return out


def traffic_examples(rows: Iterable[Mapping[str, Any]], bar: float = AGREEMENT_F1_BAR,
                     hidden: list[dict[str, list[float]] | None] | None = None
                     ) -> tuple[list[dict[str, float]], list[bool]]:
    """Features and agreement labels of logged traffic pairs (early-exited drafts are left out: cut short).

    ``hidden``, when given, is filled with each kept pair's hidden-state vectors (``None`` where none were logged).
    """
    feats, labels = [], []
    for row in rows:
        slm, llm = row.get("slm") or {}, row.get("llm") or {}
        if slm.get("early_exit") or not slm.get("token_probs"):
            continue
        feats.append(gate_features(slm["token_probs"], slm.get("token_entropies", []), slm.get("text", ""),
                                   bool(slm.get("finished", True)), row.get("messages", [])))
        labels.append(agreement_label(slm.get("text", ""), llm.get("text", ""), bar))
        if hidden is not None:
            hidden.append(slm.get("hidden"))
    return feats, labels


def record_examples(records: Iterable[Mapping[str, Any]], label: str = "gold", bar: float = AGREEMENT_F1_BAR
                    ) -> tuple[list[dict[str, float]], list[bool]]:
    """Features and labels of evaluation-harness records the gate would see (SLM answered, math did not).

    ``label="gold"`` uses the SLM answer's score; ``"agreement"`` compares it with the record's LLM answer.
    """
    from langchain_slm_router.evaluation.systems import record_generation, record_messages

    feats, labels = [], []
    for rec in records:
        if rec.get("math"):
            continue
        gen = record_generation(rec)  # type: ignore[arg-type]
        if gen is None:
            continue
        if not gen.token_probs and gen.output_tokens:
            raise ValueError("these records carry no token probabilities: re-run `slm-router eval` with this "
                             "version (its cache keys changed, so the SLM answers are recomputed)")
        feats.append(gate_features(gen.token_probs, gen.token_entropies, gen.text, gen.finished,
                                   record_messages(rec)))  # type: ignore[arg-type]
        if label == "gold":
            labels.append(bool(rec["slm"].get("correct", False)))
        else:
            labels.append(agreement_label(gen.text, (rec.get("llm") or {}).get("text", ""), bar))
    return feats, labels


def load_records(path: str | os.PathLike[str], split: str = "calib") -> list[dict[str, Any]]:
    """Records of one split from an ``slm-router eval`` JSON report (``records[dataset][split]``) or a JSONL file."""
    p = Path(path)
    if p.suffix == ".jsonl":
        return read_jsonl(p)
    data = json.loads(p.read_text(encoding="utf-8"))
    records = data.get("records", data) if isinstance(data, dict) else data
    if isinstance(records, dict):
        return [r for per in records.values() for r in (per.get(split, []) if isinstance(per, dict) else per)]
    return list(records)


def build_parser(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The ``train-gate`` subcommand's options."""
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--records", nargs="+", help="slm-router eval JSON reports (their calib split) or JSONL records")
    src.add_argument("--traffic", nargs="+", help="JSONL files written by SLMRouter(traffic_log=...)")
    parser.add_argument("--label", choices=["gold", "agreement"], default="gold",
                        help="with --records: gold scores, or agreement with the record's LLM answer")
    parser.add_argument("--agreement-bar", type=float, default=AGREEMENT_F1_BAR,
                        help="token F1 at which the SLM and LLM answers agree (default 0.5)")
    parser.add_argument("--model", choices=["logistic", "gbt"], default="logistic")
    parser.add_argument("--calibration", choices=["isotonic", "platt"], default="isotonic")
    parser.add_argument("--min-p-correct", type=float, default=0.5, help="keep threshold on P(correct)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--probe-vector", default="auto",
                        help="with --traffic: the hidden-state vector to fit a probe on (e.g. answer_mean@L15); "
                             "'auto': the middle layer's answer mean when every pair logged hidden states; 'none'")
    parser.add_argument("--out", required=True, help="where to write the gate JSON")
    return parser


def run(args: argparse.Namespace) -> int:
    """Fit and save a gate; prints what it was fit on and its calibration-split metrics."""
    from langchain_slm_router.gates.learned import LearnedGate

    hidden: list[dict[str, list[float]] | None] = []
    probe_vector: str | None = None
    if args.records:
        rows: list[dict[str, float]] = []
        labels: list[bool] = []
        for path in args.records:
            f, y = record_examples(load_records(path), args.label, args.agreement_bar)
            rows += f
            labels += y
        source = {"records": [str(p) for p in args.records], "label": args.label}
    else:
        rows, labels = [], []
        for path in args.traffic:
            f, y = traffic_examples(read_jsonl(path), args.agreement_bar, hidden)
            rows += f
            labels += y
        source = {"traffic": [str(p) for p in args.traffic], "label": "agreement"}
        probe_vector = _probe_vector(hidden, getattr(args, "probe_vector", "auto"))
    if args.label == "agreement" or args.traffic:
        source["agreement_bar"] = args.agreement_bar
    gate = LearnedGate.fit(rows, labels, model=args.model, calibration=args.calibration,
                           min_p_correct=args.min_p_correct, seed=args.seed, info=source,
                           hidden=hidden if probe_vector else None, probe_vector=probe_vector,
                           probe_components=min(64, max(2, len(rows) // 10)))
    out = gate.save(args.out)
    metrics = gate.info.get("calibration_split", {})
    print(f"gate written to {out}: {gate.info['n_rows']} examples ({gate.info['n_right']} right), "
          f"{args.model} + {args.calibration}; calibration split AUROC {metrics.get('auroc')}, "
          f"ECE {metrics.get('ece')}")
    return 0


def _probe_vector(hidden: Sequence[Mapping[str, Any] | None], choice: str) -> str | None:
    """The vector ``train-gate`` fits a probe on: ``choice``, or with ``"auto"`` the middle captured layer's answer
    mean when every pair has hidden states (``None``: no probe)."""
    if choice == "none" or not hidden or any(h is None for h in hidden):
        if choice not in ("none", "auto"):
            raise ValueError(f"--probe-vector {choice}: not every traffic pair logged hidden states")
        return None
    if choice != "auto":
        return choice
    means = sorted((k for k in hidden[0] if k.startswith("answer_mean@L")),  # type: ignore[union-attr]
                   key=lambda k: int(k.rpartition("L")[2]))
    return means[(len(means) - 1) // 2] if means else None


__all__ = ["AGREEMENT_F1_BAR", "TrafficLog", "agreement_label", "build_parser", "load_records", "read_jsonl",
           "record_examples", "run", "traffic_examples"]
