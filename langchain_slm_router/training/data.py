"""Training examples for NanoQA, drawn only from the calibration side of the evaluation harness's splits.

The evaluation harness (:mod:`langchain_slm_router.evaluation.datasets`) cuts every data set into a calibration
part and an evaluation part that never share a question (SQuAD 2.0 by article, NQ-open by halves, GSM8K: its
training file). Training uses the *calibration* part only, found by asking the harness's own loaders for it, so no
question that the harness reports results on is ever trained on (:func:`check_disjoint` proves it for a run).

Each example is the harness's prompt (same instruction, same layout) and the answer in the format the harness
scores:

* SQuAD 2.0: the shortest accepted answer (the shortest exact phrase of the context), or ``unanswerable``; the
  context is a bounded window (the sentences around the answer, and neighbouring sentences as distractors) of at
  most ``max_context_words`` words, so a training step never pays for a 600-token paragraph;
* NQ-open: the shortest accepted answer;
* GSM8K: the worked solution of the training file (calculator annotations removed), ending ``Answer: <number>``.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from langchain_slm_router.evaluation.datasets import (
    default_data_dir,
    load_gsm8k,
    load_nq_open,
    load_squad_v2,
    read_rows,
    squad_prompt,
)

#: The answer the harness counts as an abstention for SQuAD 2.0 questions the context cannot answer.
ABSTAIN = "unanswerable"

#: Default share of each data set in a training mix.
DEFAULT_MIX: dict[str, float] = {"squad_v2": 0.8, "nq_open": 0.1, "gsm8k": 0.1}


class QAExample(BaseModel):
    """One training example: the user message the harness sends and the answer it scores best."""

    model_config = ConfigDict(frozen=True)

    id: str
    """The harness's item id (``squad_v2:<id>``, ``nq_open:<i>``, ``gsm8k_train:<i>``)."""
    dataset: str
    """``squad_v2``, ``nq_open`` or ``gsm8k``."""
    prompt: str
    """The user message (the harness's instruction and layout; a bounded SQuAD context)."""
    target: str
    """The gold answer in the harness's format."""
    answers: list[str] = Field(default_factory=list)
    """Every accepted answer (empty for unanswerable questions)."""
    unanswerable: bool = False
    """SQuAD 2.0 question the context does not answer."""


_SENT = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])")


def sentences(text: str) -> list[str]:
    """The sentences of a paragraph (a light splitter: end punctuation followed by a capital)."""
    return [s for s in _SENT.split(text.strip()) if s]


def _words(text: str) -> set[str]:
    return {w for w in re.findall(r"[a-z0-9]+", text.lower()) if len(w) > 2}


def context_window(context: str, question: str, answer: str | None, max_words: int = 150) -> str:
    """A bounded window of ``context``: the sentence holding ``answer`` (or, without one, the sentence sharing most
    words with ``question``), then its neighbours, alternately after and before, while under ``max_words``."""
    sents = sentences(context)
    if len(context.split()) <= max_words or len(sents) <= 1:
        return context
    if answer and any(answer in s for s in sents):
        centre = next(i for i, s in enumerate(sents) if answer in s)
    else:
        q = _words(question)
        centre = max(range(len(sents)), key=lambda i: len(q & _words(sents[i])))
    lo = hi = centre
    used = len(sents[centre].split())
    for step in range(1, 2 * len(sents)):
        i = hi + 1 if step % 2 else lo - 1
        if not 0 <= i < len(sents):
            continue
        n = len(sents[i].split())
        if used + n > max_words:
            break
        used += n
        lo, hi = min(lo, i), max(hi, i)
    return " ".join(sents[lo : hi + 1])


def gsm8k_solution(answer_field: str) -> str:
    """A GSM8K training answer as the harness asks for it: short lines, then ``Answer: <number>``."""
    body, _, final = answer_field.partition("####")
    body = re.sub(r"<<[^>]*>>", "", body).strip()
    return f"{body}\nAnswer: {final.strip().replace(',', '')}"


def squad_examples(data_dir: Path | str | None, seed: int = 0, max_context_words: int = 150) -> list[QAExample]:
    """SQuAD 2.0 examples from the harness's calibration articles (never an evaluation article)."""
    calib_ids = {item.id for item in load_squad_v2(data_dir, seed=seed, split="calib")}
    out = []
    for r in read_rows("squad_v2", data_dir):
        item_id = f"squad_v2:{r['id']}"
        if item_id not in calib_ids:
            continue
        answers = sorted({a for a in r.get("answers", []) if a})
        unanswerable = bool(r.get("is_impossible")) or not answers
        target = ABSTAIN if unanswerable else min(answers, key=lambda a: (len(a), a))
        window = context_window(r["context"], r["question"], None if unanswerable else target, max_context_words)
        out.append(QAExample(id=item_id, dataset="squad_v2", prompt=squad_prompt(window, r["question"]),
                             target=target, answers=answers, unanswerable=unanswerable))
    return out


def nq_examples(data_dir: Path | str | None, seed: int = 0) -> list[QAExample]:
    """NQ-open examples from the harness's calibration half."""
    return [QAExample(id=item.id, dataset="nq_open", prompt=item.prompt, answers=list(item.answers),
                      target=min(item.answers, key=lambda a: (len(a), a)))
            for item in load_nq_open(data_dir, seed=seed, split="calib") if item.answers]


def gsm8k_examples(data_dir: Path | str | None, seed: int = 0) -> list[QAExample]:
    """GSM8K examples from its training file (the harness evaluates on the test file)."""
    rows = read_rows("gsm8k_train", data_dir)
    out = []
    for item in load_gsm8k(data_dir, seed=seed, split="calib"):
        index = int(item.id.rsplit(":", 1)[1])
        out.append(QAExample(id=item.id, dataset="gsm8k", prompt=item.prompt, answers=list(item.answers),
                             target=gsm8k_solution(rows[index]["answer"])))
    return out


BUILDERS = {"squad_v2": squad_examples, "nq_open": nq_examples, "gsm8k": gsm8k_examples}


def build_examples(data_dir: Path | str | None, n: int, mix: dict[str, float] | None = None, seed: int = 0,
                   max_context_words: int = 150, unanswerable_share: float | None = None) -> list[QAExample]:
    """``n`` training examples mixed by ``mix`` (default :data:`DEFAULT_MIX`), shuffled with ``seed``.

    Each data set's examples come from the harness's calibration split; a data set gives at most what it has.
    ``data_dir=None`` is the harness's default data folder (:func:`default_data_dir`), as for ``slm-router eval``.
    ``unanswerable_share`` fixes the fraction of SQuAD examples whose target is ``unanswerable`` (``None``: SQuAD's
    own, about a half; a model trained on that much abstention learns to abstain on everything first).
    """
    if unanswerable_share is not None and not 0.0 <= unanswerable_share <= 1.0:
        raise ValueError(f"unanswerable_share must be in [0, 1], got {unanswerable_share}")
    data_dir = data_dir if data_dir is not None else default_data_dir()
    mix = mix or DEFAULT_MIX
    total = sum(mix.values())
    rng = random.Random(f"nanoqa:{seed}")
    out: list[QAExample] = []
    for name, weight in mix.items():
        if weight <= 0:
            continue
        pool = (squad_examples(data_dir, seed, max_context_words) if name == "squad_v2"
                else BUILDERS[name](data_dir, seed))
        rng.shuffle(pool)
        k = max(1, round(n * weight / total))
        if name == "squad_v2" and unanswerable_share is not None:
            no = [ex for ex in pool if ex.unanswerable]
            yes = [ex for ex in pool if not ex.unanswerable]
            n_no = min(len(no), round(k * unanswerable_share))
            pool = no[:n_no] + yes[: k - n_no]
        out.extend(pool[:k])
    rng.shuffle(out)
    return out[:n]


def check_disjoint(examples: Sequence[QAExample], data_dir: Path | str | None, seed: int = 0) -> None:
    """Raise ``ValueError`` if any example is a question of the harness's evaluation split."""
    data_dir = data_dir if data_dir is not None else default_data_dir()
    eval_ids: set[str] = set()
    for loader in (load_squad_v2, load_nq_open, load_gsm8k):
        eval_ids |= {item.id for item in loader(data_dir, seed=seed, split="eval")}
    leaked = [ex.id for ex in examples if ex.id in eval_ids]
    if leaked:
        raise ValueError(f"{len(leaked)} training examples are evaluation questions, e.g. {leaked[:3]}")


__all__ = ["ABSTAIN", "DEFAULT_MIX", "QAExample", "build_examples", "check_disjoint", "context_window",
           "gsm8k_examples", "gsm8k_solution", "nq_examples", "sentences", "squad_examples"]
