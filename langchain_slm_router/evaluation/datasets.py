"""Loaders for the evaluation data sets, with reproducible samples and disjoint calibration / evaluation splits.

Where the rows come from (:func:`read_rows`, the one place that decides):

* a data folder (``--data-dir``, else ``$SLM_ROUTER_DATA_DIR``, else a ``../shared/data`` beside the working
  directory or the checkout; :func:`default_data_dir`) holding the JSONL files named in :data:`FILES`: the
  offline path, and the one the tests use. A folder that lacks a file is an error, not a silent download;
* with no data folder, the public sets by their usual names on the Hugging Face hub through the ``datasets``
  library (``pip install 'langchain-slm-router[datasets]'``; cached in ``~/.cache/huggingface``): SQuAD 2.0
  (``rajpurkar/squad_v2``, validation), NQ-open (``google-research-datasets/nq_open``, validation) and GSM8K
  (``openai/gsm8k``, ``main``: test for evaluation, train for calibration). The math query set is the project's
  own: it is generated (:func:`~langchain_slm_router.evaluation.math_sets.math_dev_queries`, sympy answers).

When neither works, :class:`~langchain_slm_router.errors.DataUnavailableError` says what was tried and how to fix
it. Each loader returns :class:`EvalItem` objects: the question, the prompt that is sent to every system, and the
accepted answers.

Splits: a data set's rows are shuffled once with ``seed`` and cut into a calibration part and an evaluation part
that never share a question (SQuAD 2.0 is split by article, so no context is seen in both; GSM8K calibrates on
its training split). ``limit`` takes the first ``limit`` items of the shuffled split, so a smaller run is a
prefix of a larger one with the same seed, and the mixed workload reuses the questions of the per-data-set runs
(their cached generations are reused too).
"""

from __future__ import annotations

import json
import math
import os
import random
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from langchain_slm_router.errors import DataUnavailableError
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


#: The environment variable naming the data folder.
DATA_DIR_ENV = "SLM_ROUTER_DATA_DIR"

#: The hub copies of the public sets: data-set key -> (hub name, configuration, split).
HUB_SOURCES: dict[str, tuple[str, str | None, str]] = {
    "squad_v2": ("rajpurkar/squad_v2", None, "validation"),
    "nq_open": ("google-research-datasets/nq_open", None, "validation"),
    "gsm8k": ("openai/gsm8k", "main", "test"),
    "gsm8k_train": ("openai/gsm8k", "main", "train"),
}


def default_data_dir() -> Path | None:
    """``$SLM_ROUTER_DATA_DIR``, else a ``../shared/data`` beside the working directory or this checkout, else None."""
    env = os.environ.get(DATA_DIR_ENV)
    if env:
        return Path(env)
    for base in (Path.cwd(), Path(__file__).resolve().parents[2]):
        candidate = base.parent / "shared" / "data"
        if candidate.is_dir():
            return candidate
    return None


def _hub_row(name: str, row: dict) -> dict:
    """A hub row in the layout of the JSONL files."""
    if name == "squad_v2":
        answers = list(row["answers"]["text"])
        return {"id": row["id"], "title": row["title"], "context": row["context"], "question": row["question"],
                "answers": answers, "is_impossible": not answers}
    return {"question": row["question"], "answer": row["answer"]}


def _from_hub(name: str) -> list[dict]:
    repo, config, split = HUB_SOURCES[name]
    where = f"{repo}{f' ({config})' if config else ''}, split {split!r}"
    fix = (f"pass --data-dir (or set {DATA_DIR_ENV}) to a folder holding {FILES[name]}, or install the extra "
           "(pip install 'langchain-slm-router[datasets]') on a machine that can reach huggingface.co")
    try:
        import datasets as hf_datasets
    except ImportError:
        raise DataUnavailableError(
            f"{name}: no data folder, and the Hugging Face `datasets` library is not installed to load {where}; "
            f"{fix}.") from None
    try:
        rows = hf_datasets.load_dataset(repo, config, split=split)
    except Exception as exc:  # noqa: BLE001 - offline, unknown name, hub error: all end the same way
        raise DataUnavailableError(
            f"{name}: no data folder, and {where} could not be loaded from the Hugging Face hub "
            f"({type(exc).__name__}: {str(exc)[:200]}); {fix}.") from exc
    return [_hub_row(name, dict(r)) for r in rows]


def read_rows(name: str, data_dir: Path | str | None) -> list[dict]:
    """The rows of data set file ``name`` (a key of :data:`FILES`): from ``data_dir``, else the hub or generator.

    Raises:
        DataUnavailableError: ``data_dir`` lacks the file, or (no ``data_dir``) the hub copy cannot be loaded.
    """
    if data_dir is None:
        if name == "math":
            from langchain_slm_router.evaluation.math_sets import math_dev_queries

            return math_dev_queries()
        return _from_hub(name)
    path = Path(data_dir) / FILES[name]
    if not path.is_file():
        hint = (f"write one with: python benchmarks/make_math_queries.py --out {path}" if name == "math" else
                f"leave out --data-dir and {DATA_DIR_ENV} to load {HUB_SOURCES[name][0]} from the Hugging Face "
                "hub (the `datasets` extra)")
        raise DataUnavailableError(f"{name}: {path} not found. Point --data-dir (or {DATA_DIR_ENV}) at a folder "
                                   f"holding {FILES[name]}, or {hint}.")
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


def load_squad_v2(data_dir: Path | str | None, limit: int | None = None, seed: int = 0,
                  split: Split = "eval") -> list[EvalItem]:
    """SQuAD 2.0 dev with its context; unanswerable questions have no answers. Split by article."""
    rows = read_rows("squad_v2", data_dir)
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


def load_nq_open(data_dir: Path | str | None, limit: int | None = None, seed: int = 0,
                 split: Split = "eval") -> list[EvalItem]:
    """NQ-open dev (closed-book), halves for calibration and evaluation."""
    rows = read_rows("nq_open", data_dir)
    indexed = list(enumerate(rows))
    items = [
        EvalItem(id=f"nq_open:{i}", dataset="nq_open", question=r["question"],
                 prompt=f"{NQ_INSTRUCTION}\nQuestion: {r['question'].strip()}?", answers=list(r["answer"]))
        for i, r in _halves(indexed, seed, "nq", split)
    ]
    return _take(items, limit)


def load_gsm8k(data_dir: Path | str | None, limit: int | None = None, seed: int = 0,
               split: Split = "eval") -> list[EvalItem]:
    """GSM8K: evaluation on ``gsm8k_test_dev``, calibration on ``gsm8k_train``."""
    name = "gsm8k" if split == "eval" else "gsm8k_train"
    rows = list(enumerate(read_rows(name, data_dir)))
    items = [
        EvalItem(id=f"{name}:{i}", dataset="gsm8k", question=r["question"],
                 prompt=f"{GSM8K_INSTRUCTION}\n\nProblem: {r['question'].strip()}",
                 answers=[gsm8k_reference(r["answer"])])
        for i, r in _shuffled(rows, seed, "gsm8k")
    ]
    return _take(items, limit)


def load_math_queries(data_dir: Path | str | None, limit: int | None = None, seed: int = 0,
                      split: Split = "eval") -> list[EvalItem]:
    """The symbolic math query set, sent as is (the math engine reads it). ``not_math`` rows have no
    reference answer and are left out."""
    rows = [(i, r) for i, r in enumerate(read_rows("math", data_dir)) if r.get("answer") is not None]
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


def load_mixed(data_dir: Path | str | None, limit: int | None = None, seed: int = 0, split: Split = "eval",
               weights: dict[str, float] | None = None) -> list[EvalItem]:
    """A mixed workload drawn from every data set (default shares :data:`MIXED_WEIGHTS`), interleaved in a
    seeded random order. It takes each data set's first questions, so it reuses the per-data-set runs."""
    counts = mixed_counts(limit if limit is not None else 100, weights)
    items: list[EvalItem] = []
    for name, n in counts.items():
        items.extend(LOADERS[name](data_dir, n, seed, split))
    return _shuffled(items, seed, "mixed")


def load_dataset(name: str, data_dir: Path | str | None, limit: int | None = None, seed: int = 0,
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
    "DATA_DIR_ENV",
    "EvalItem",
    "FILES",
    "HUB_SOURCES",
    "default_data_dir",
    "read_rows",
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
