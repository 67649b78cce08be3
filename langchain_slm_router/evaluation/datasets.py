"""Loaders for the evaluation data sets, with reproducible samples and disjoint calibration / evaluation splits.

Each loader reads one JSONL file from ``data_dir`` (the project's ``../shared/data`` by default, or any folder
holding files of the same names) and returns :class:`EvalItem` objects: the question, the prompt that is sent to
every system, and the accepted answers.

Splits: a data set's rows are shuffled once with ``seed`` and cut into a calibration part and an evaluation part
that never share a question (SQuAD 2.0 is split by article, so no context is seen in both; GSM8K calibrates on
its training split). ``limit`` takes the first ``limit`` items of the shuffled split, so a smaller run is a
prefix of a larger one with the same seed, and the mixed workload reuses the questions of the per-data-set runs
(their cached generations are reused too).
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from langchain_slm_router.evaluation.scoring import gsm8k_reference

Split = Literal["eval", "calib"]

SQUAD_INSTRUCTION = (
    "Answer the question using only the context. Reply with the shortest exact phrase from the context, "
    'nothing else. If the context does not contain the answer, reply with exactly "unanswerable".'
)
NQ_INSTRUCTION = "Answer with a short phrase only (a name, date, number or place), no explanation."
GSM8K_INSTRUCTION = (
    "Solve the problem step by step in a few short lines. End with a line of the form 'Answer: <number>'."
)

FILES = {
    "squad_v2": "squad_v2_dev.jsonl",
    "nq_open": "nq_open_dev.jsonl",
    "gsm8k": "gsm8k_test_dev.jsonl",
    "gsm8k_train": "gsm8k_train.jsonl",
    "math": "math_queries_dev.jsonl",
}

#: Shares of the mixed workload (math-heavy, as in the reference systems' mixed benchmark).
MIXED_WEIGHTS: dict[str, float] = {"math": 0.4, "squad_v2": 0.2, "nq_open": 0.2, "gsm8k": 0.2}


class EvalItem(BaseModel):
    """One evaluation question."""

    model_config = ConfigDict(frozen=True)

    id: str
    dataset: Literal["squad_v2", "nq_open", "gsm8k", "math"]
    question: str
    prompt: str = Field(description="the text sent, as the user message, to every system")
    answers: list[str] = Field(default_factory=list)
    unanswerable: bool = False
    kind: str | None = None
    """Sub-kind (math query kind; SQuAD ``answerable``/``unanswerable``)."""


def _read(data_dir: Path | str, name: str) -> list[dict]:
    path = Path(data_dir) / FILES[name]
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found. Point --data-dir at a folder holding {FILES[name]} (the project reads "
            "../shared/data by default)."
        )
    with path.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def _shuffled(rows: list, seed: int, salt: str) -> list:
    order = list(rows)
    random.Random(f"{seed}:{salt}").shuffle(order)
    return order


def _halves(rows: list, seed: int, salt: str, split: Split) -> list:
    order = _shuffled(rows, seed, salt)
    cut = len(order) // 2
    return order[cut:] if split == "eval" else order[:cut]


def _take(items: list[EvalItem], limit: int | None) -> list[EvalItem]:
    return items if limit is None else items[: max(0, limit)]


def squad_prompt(context: str, question: str) -> str:
    """The SQuAD prompt: the instruction (with the abstention rule), the context, the question."""
    return f"{SQUAD_INSTRUCTION}\n\nContext: {context}\n\nQuestion: {question}"


def load_squad_v2(data_dir: Path | str, limit: int | None = None, seed: int = 0,
                  split: Split = "eval") -> list[EvalItem]:
    """SQuAD 2.0 dev with its context; unanswerable questions have no answers. Split by article."""
    rows = _read(data_dir, "squad_v2")
    titles = _shuffled(sorted({r["title"] for r in rows}), seed, "squad_titles")
    calib_titles = set(titles[: len(titles) // 2])
    rows = [r for r in rows if (r["title"] in calib_titles) == (split == "calib")]
    items = [
        EvalItem(
            id=f"squad_v2:{r['id']}", dataset="squad_v2", question=r["question"],
            prompt=squad_prompt(r["context"], r["question"]),
            answers=sorted({a for a in r.get("answers", []) if a}),
            unanswerable=bool(r.get("is_impossible")) or not r.get("answers"),
            kind="unanswerable" if (r.get("is_impossible") or not r.get("answers")) else "answerable",
        )
        for r in _shuffled(rows, seed, "squad")
    ]
    return _take(items, limit)


def load_nq_open(data_dir: Path | str, limit: int | None = None, seed: int = 0,
                 split: Split = "eval") -> list[EvalItem]:
    """NQ-open dev (closed-book), halves for calibration and evaluation."""
    rows = _read(data_dir, "nq_open")
    indexed = list(enumerate(rows))
    items = [
        EvalItem(id=f"nq_open:{i}", dataset="nq_open", question=r["question"],
                 prompt=f"{NQ_INSTRUCTION}\nQuestion: {r['question'].strip()}?", answers=list(r["answer"]))
        for i, r in _halves(indexed, seed, "nq", split)
    ]
    return _take(items, limit)


def load_gsm8k(data_dir: Path | str, limit: int | None = None, seed: int = 0,
               split: Split = "eval") -> list[EvalItem]:
    """GSM8K: evaluation on ``gsm8k_test_dev``, calibration on ``gsm8k_train``."""
    name = "gsm8k" if split == "eval" else "gsm8k_train"
    rows = list(enumerate(_read(data_dir, name)))
    items = [
        EvalItem(id=f"{name}:{i}", dataset="gsm8k", question=r["question"],
                 prompt=f"{GSM8K_INSTRUCTION}\n\nProblem: {r['question'].strip()}",
                 answers=[gsm8k_reference(r["answer"])])
        for i, r in _shuffled(rows, seed, "gsm8k")
    ]
    return _take(items, limit)


def load_math_queries(data_dir: Path | str, limit: int | None = None, seed: int = 0,
                      split: Split = "eval") -> list[EvalItem]:
    """The symbolic math query set, sent as is (the math engine reads it). ``not_math`` rows have no
    reference answer and are left out."""
    rows = [(i, r) for i, r in enumerate(_read(data_dir, "math")) if r.get("answer") is not None]
    items = [
        EvalItem(id=f"math:{i}", dataset="math", question=r["query"], prompt=r["query"],
                 answers=[r["answer"]], kind=r.get("kind"))
        for i, r in _halves(rows, seed, "math", split)
    ]
    return _take(items, limit)


LOADERS: dict[str, Callable[..., list[EvalItem]]] = {
    "squad_v2": load_squad_v2,
    "nq_open": load_nq_open,
    "gsm8k": load_gsm8k,
    "math": load_math_queries,
}


def mixed_counts(limit: int, weights: dict[str, float] | None = None) -> dict[str, int]:
    """How many questions of each data set a mixed workload of ``limit`` questions takes."""
    weights = weights or MIXED_WEIGHTS
    total = sum(weights.values())
    counts = {k: int(math.floor(limit * w / total)) for k, w in weights.items()}
    for k in sorted(weights, key=lambda k: -weights[k]):  # hand out the remainder, biggest share first
        if sum(counts.values()) >= limit:
            break
        counts[k] += 1
    return counts


def load_mixed(data_dir: Path | str, limit: int | None = None, seed: int = 0, split: Split = "eval",
               weights: dict[str, float] | None = None) -> list[EvalItem]:
    """A mixed workload drawn from every data set (default shares :data:`MIXED_WEIGHTS`), interleaved in a
    seeded random order. It takes each data set's first questions, so it reuses the per-data-set runs."""
    counts = mixed_counts(limit if limit is not None else 100, weights)
    items: list[EvalItem] = []
    for name, n in counts.items():
        items.extend(LOADERS[name](data_dir, n, seed, split))
    return _shuffled(items, seed, "mixed")


def load_dataset(name: str, data_dir: Path | str, limit: int | None = None, seed: int = 0,
                 split: Split = "eval") -> list[EvalItem]:
    """Load ``name`` (``squad_v2``, ``nq_open``, ``gsm8k``, ``math`` or ``mixed``)."""
    if name == "mixed":
        return load_mixed(data_dir, limit, seed, split)
    if name not in LOADERS:
        raise ValueError(f"unknown dataset {name!r}; expected one of {', '.join(DATASET_NAMES)}")
    return LOADERS[name](data_dir, limit, seed, split)


DATASET_NAMES: Sequence[str] = ("squad_v2", "nq_open", "gsm8k", "math", "mixed")

__all__ = [
    "DATASET_NAMES",
    "EvalItem",
    "FILES",
    "LOADERS",
    "MIXED_WEIGHTS",
    "load_dataset",
    "load_gsm8k",
    "load_math_queries",
    "load_mixed",
    "load_nq_open",
    "load_squad_v2",
    "mixed_counts",
    "squad_prompt",
]
