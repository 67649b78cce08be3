"""Text normalisation: SQuAD's answer normalisation, token F1, reply cleaning and abstention detection.

A leaf module (nothing of the package below it): the gate's features and the agreement labels of logged traffic
(``gates/``) and the evaluation scorers (``evaluation/scoring.py``) all read answers through it.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Iterable

_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCT = set(string.punctuation)

#: Replies that count as an abstention on SQuAD 2.0 (after normalisation, also as a reply's first words).
ABSTENTIONS = (
    "unanswerable",
    "no answer",
    "not answerable",
    "cannot be answered",
    "can not be answered",
    "cannot answer",
    "not mentioned",
    "not stated",
    "not provided",
    "not given",
    "unknown",
    "i dont know",
    "none",
)

#: Phrases that mark an abstention anywhere in a reply's first line (normalised, apostrophes dropped).
ABSTAIN_PHRASES = (
    "unanswerable",
    "does not contain",
    "doesnt contain",
    "does not mention",
    "doesnt mention",
    "does not provide",
    "does not say",
    "does not specify",
    "no information",
    "not mentioned",
    "not in context",
    "not in passage",
    "not in text",
    "cannot be determined",
    "cannot be answered",
)


def normalize_answer(text: str) -> str:
    """SQuAD's official normalisation: lower-case, drop punctuation and articles, squeeze white space."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in _PUNCT)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def exact_match(prediction: str, truth: str) -> float:
    """1.0 when the normalised strings are equal."""
    return float(normalize_answer(prediction) == normalize_answer(truth))


def token_f1(prediction: str, truth: str) -> float:
    """SQuAD token F1 between normalised prediction and truth (both empty: 1.0; one empty: 0.0)."""
    pred, gold = normalize_answer(prediction).split(), normalize_answer(truth).split()
    if not pred or not gold:
        return float(pred == gold)
    common = Counter(pred) & Counter(gold)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred), same / len(gold)
    return 2 * precision * recall / (precision + recall)


def max_over(metric, prediction: str, truths: Iterable[str]) -> float:  # type: ignore[no-untyped-def]
    """The best value of ``metric(prediction, truth)`` over the accepted answers (0.0 when there are none)."""
    return max((metric(prediction, t) for t in truths), default=0.0)


def clean_reply(reply: str) -> str:
    """The first line of a reply without a leading ``Answer:`` / ``The answer is`` label or wrapping quotes."""
    text = reply.strip()
    text = text.split("\n", 1)[0].strip() if text else text
    text = re.sub(r"^(the\s+)?(final\s+)?answer(\s+is)?\s*[:\-]?\s+|^a\s*:\s*", "", text, flags=re.IGNORECASE)
    return text.strip().strip("\"'`").strip()


def is_abstention(reply: str) -> bool:
    """Whether a reply declines to answer (``unanswerable``, ``no answer``, ``the context does not ...``)."""
    norm = normalize_answer(clean_reply(reply))
    if not norm:
        return True
    if any(norm == a or norm.startswith(a + " ") for a in ABSTENTIONS):
        return True
    return any(p in norm for p in ABSTAIN_PHRASES)


__all__ = ["ABSTAIN_PHRASES", "ABSTENTIONS", "clean_reply", "exact_match", "is_abstention", "max_over",
           "normalize_answer", "token_f1"]
