"""Answer scoring with the conventions each data set's users expect.

* SQuAD 2.0: the official normalisation (lower-case, strip punctuation, the articles ``a``/``an``/``the`` and
  extra white space), exact match and token F1, each the maximum over the accepted answers. An unanswerable
  question is answered correctly only by an abstention (EM = F1 = 1 for an abstention, 0 otherwise), and an
  abstention on an answerable question scores 0.
* NQ-open: exact match after the same normalisation against any accepted answer. Small models rarely answer
  with the bare span, so :func:`nq_score` also reports ``contains`` (an accepted answer appears, normalised, as a
  whole-token run inside the reply); the headline score stays exact match, as in the literature.
* GSM8K: the final number of the reply (``#### n``, ``Answer: n``, or else the last number) equals the
  reference's number after ``####``.
* Math queries: the reply is compared symbolically with the sympy-checked reference (solution sets as sets,
  ``+ C`` dropped from antiderivatives); a free-text reply is reduced to its last ``= ...`` or last number.

Every scorer returns a :class:`Score`: ``score`` in [0, 1] is the headline per-question quality (SQuAD F1,
exact match elsewhere) and ``correct`` (``score >= 0.5``) is the label the router is judged on: a question
"should escalate" when the SLM's answer is not correct.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict

from langchain_slm_router.text import (  # re-exported: text normalisation lives in the leaf module
    ABSTAIN_PHRASES,
    ABSTENTIONS,
    clean_reply,
    exact_match,
    is_abstention,
    max_over,
    normalize_answer,
    token_f1,
)

class Score(BaseModel):
    """How one reply scored."""

    model_config = ConfigDict(frozen=True)

    score: float
    """Headline per-question quality in [0, 1] (SQuAD: F1; otherwise exact match / accuracy)."""
    correct: bool
    """``score >= 0.5``: the label routing is judged on (SLM wrong = should escalate)."""
    em: float = 0.0
    f1: float = 0.0
    abstained: bool = False
    extracted: str | None = None
    """What the scorer compared (the final number, the reduced math answer), when it extracted something."""


# ---------------------------------------------------------------------------------------------- SQuAD / NQ
def squad_score(reply: str, answers: Sequence[str], unanswerable: bool) -> Score:
    """SQuAD 2.0 EM/F1 (max over answers); unanswerable questions need an abstention."""
    abstained = is_abstention(reply)
    if unanswerable or not answers:
        value = 1.0 if abstained else 0.0
        return Score(score=value, correct=bool(value), em=value, f1=value, abstained=abstained)
    if abstained:
        return Score(score=0.0, correct=False, abstained=True)
    pred = clean_reply(reply)
    em = max(max_over(exact_match, pred, answers), max_over(exact_match, reply, answers))
    f1 = max(max_over(token_f1, pred, answers), max_over(token_f1, reply, answers))
    return Score(score=f1, correct=f1 >= 0.5, em=em, f1=f1, abstained=False, extracted=pred)


def contains_answer(reply: str, answers: Sequence[str]) -> bool:
    """An accepted answer appears, normalised, as a whole-token run inside the normalised reply."""
    words = f" {normalize_answer(reply)} "
    return any(normalize_answer(a) and f" {normalize_answer(a)} " in words for a in answers)


def nq_score(reply: str, answers: Sequence[str]) -> Score:
    """NQ-open exact match (normalised, any accepted answer) of the reply's first line."""
    pred = clean_reply(reply)
    em = max(max_over(exact_match, pred, answers), max_over(exact_match, reply, answers))
    f1 = max_over(token_f1, pred, answers)
    return Score(score=em, correct=em >= 0.5, em=em, f1=f1, extracted=pred)


# ---------------------------------------------------------------------------------------------- GSM8K
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?|-?\.\d+")


def _to_number(text: str) -> float | None:
    try:
        return float(text.replace(",", "").rstrip("."))
    except ValueError:
        return None


def gsm8k_reference(answer_field: str) -> str:
    """The reference number after ``####`` in a GSM8K answer."""
    return answer_field.rsplit("####", 1)[-1].strip().replace(",", "")


def final_number(reply: str) -> str | None:
    """The reply's final number: the last number on the line after the last ``####`` / ``answer is`` /
    ``Answer:``, else the reply's last number."""
    for marker in (r"####", r"answer\s*(?:is|:)"):
        parts = re.split(marker, reply, flags=re.IGNORECASE)
        if len(parts) > 1:
            line = parts[-1].strip().split("\n", 1)[0]
            found = _NUMBER.findall(line)
            if found:  # "Answer: 15 - 3 = 12" -> 12
                return found[-1].replace(",", "").rstrip(".")
    found = _NUMBER.findall(reply)
    return found[-1].replace(",", "").rstrip(".") if found else None


def gsm8k_score(reply: str, reference: str) -> Score:
    """1.0 when the reply's final number equals the reference number."""
    got = final_number(reply)
    want = _to_number(reference)
    value = _to_number(got) if got is not None else None
    ok = value is not None and want is not None and abs(value - want) < 1e-6
    return Score(score=float(ok), correct=ok, em=float(ok), f1=float(ok), extracted=got)


# ---------------------------------------------------------------------------------------------- math
def _math_candidates(reply: str) -> list[str]:
    text = reply.strip().replace("**", "^").replace("\\(", "").replace("\\)", "").replace("$", "")
    text = text.replace("\u2212", "-").replace("\u00d7", "*")
    cands = [text]
    first = clean_reply(text)
    cands.append(first.rstrip("."))
    eq = re.findall(r"([a-z]\s*=\s*[^\n;]+)", text)
    if eq:
        cands.append(eq[-1].strip().rstrip("."))
    if "=" in first:
        cands.append(first.rsplit("=", 1)[-1].strip().rstrip("."))
    nums = re.findall(r"-?\d+(?:\.\d+)?(?:\s*/\s*\d+)?", text)
    if nums:
        cands.append(nums[-1])
    return [c for c in dict.fromkeys(cands) if c]


def math_answers_match(got: str, expected: str) -> bool:
    """Symbolic comparison of an answer with a sympy-checked reference answer string."""
    from langchain_slm_router.evaluation.symbolic import answers_match

    return answers_match(got, expected)


def math_score(reply: str, expected: str) -> Score:
    """1.0 when the reply (or its reduced final expression) equals the reference symbolically."""
    for cand in _math_candidates(reply):
        if math_answers_match(cand, expected):
            return Score(score=1.0, correct=True, em=1.0, f1=1.0, extracted=cand)
    return Score(score=0.0, correct=False, extracted=None)


def score_answer(dataset: str, reply: str, answers: Sequence[str], unanswerable: bool = False) -> Score:
    """Score a reply for an item of ``dataset`` (``squad_v2``, ``nq_open``, ``gsm8k`` or ``math``)."""
    if dataset == "squad_v2":
        return squad_score(reply, answers, unanswerable)
    if dataset == "nq_open":
        return nq_score(reply, answers)
    if dataset == "gsm8k":
        return gsm8k_score(reply, answers[0])
    if dataset == "math":
        return math_score(reply, answers[0])
    raise ValueError(f"unknown dataset {dataset!r}; expected squad_v2, nq_open, gsm8k or math")


__all__ = [
    "ABSTAIN_PHRASES",
    "ABSTENTIONS",
    "Score",
    "clean_reply",
    "contains_answer",
    "exact_match",
    "final_number",
    "gsm8k_reference",
    "gsm8k_score",
    "is_abstention",
    "math_answers_match",
    "math_score",
    "max_over",
    "normalize_answer",
    "nq_score",
    "score_answer",
    "squad_score",
    "token_f1",
]
