"""What makes two answers interchangeable: the cache key of a conversation.

A key has two parts:

* the **bucket**: an exact SHA-256 over everything except the question's wording that shapes the answer: the
  earlier turns and the system prompt (the context or retrieved documents a RAG chain puts there), the router's
  configuration (models, gate, options), and two guards read from the question itself: its numbers and whether it
  is negated. Two questions can only share an answer when their buckets are equal, so the same words under another
  context, "15% of 240" vs "15% of 250", and "who won" vs "who did not win" never match, whatever the similarity;
* the **question**: normalised for the exact key (case, white space, trailing punctuation), embedded for semantic
  matching within the bucket.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

_SPACE = re.compile(r"\s+")
_EDGE_PUNCT = re.compile(r"^[\s\"'`.,;:!?¿¡()\[\]]+|[\s\"'`.,;:!?¿¡()\[\]]+$")
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
_NEGATION = re.compile(r"\b(?:not|no|never|none|nobody|nothing|neither|nor|without|except|isn't|aren't|wasn't|"
                       r"weren't|don't|doesn't|didn't|can't|cannot|won't|wouldn't|shouldn't|couldn't|hasn't|"
                       r"haven't|hadn't)\b|n't\b")


def digest(*parts: Any) -> str:
    """SHA-256 (hex) of the parts as canonical JSON."""
    raw = json.dumps(parts, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()


def normalize_question(text: str) -> str:
    """The question as the exact key reads it: NFKC, case-folded, white space collapsed, edge punctuation off."""
    text = unicodedata.normalize("NFKC", text).casefold()
    return _EDGE_PUNCT.sub("", _SPACE.sub(" ", text)).strip()


def question_guard(question: str) -> tuple[tuple[str, ...], bool]:
    """The numbers in the question (in order, separators dropped) and whether it is negated."""
    norm = normalize_question(question)
    numbers = tuple(n.replace(",", "") for n in _NUMBER.findall(norm))
    return numbers, bool(_NEGATION.search(norm.replace("\u2019", "'")))


def context_digest(messages: Sequence[dict[str, str]]) -> str:
    """The digest of a conversation's context: every message but the last (system prompt, earlier turns,
    retrieved documents placed in them)."""
    return digest([[m.get("role", ""), m.get("content", "")] for m in messages[:-1]])


@dataclass(frozen=True)
class CacheKey:
    """The key of one question in one context under one configuration."""

    question: str
    """The question as asked (the text embedded for semantic matching)."""
    normalized: str
    """:func:`normalize_question` of it."""
    context: str
    """:func:`context_digest` of the conversation (what ``invalidate(context=...)`` matches)."""
    bucket: str
    """Digest of context, configuration and question guards: only entries with this bucket can match."""
    exact: str
    """Digest of bucket and normalised question: the exact-match key."""

    @classmethod
    def build(cls, messages: Sequence[dict[str, str]], config: str) -> CacheKey:
        """The key of a conversation (role/content dicts, the last one the user's question) under the
        configuration digest ``config``."""
        question = messages[-1].get("content", "").strip() if messages else ""
        normalized = normalize_question(question)
        context = context_digest(messages)
        bucket = digest("bucket", context, config, question_guard(question))
        return cls(question=question, normalized=normalized, context=context, bucket=bucket,
                   exact=digest("exact", bucket, normalized))




def stable_settings(obj: Any) -> Any:
    """The plain settings of a component for the configuration digest: a pydantic model's JSON fields, kept only
    where they are plain data (numbers, text, lists and dicts of them), so the digest is equal in every process
    that configures the component the same way (no object addresses, clients or callbacks)."""
    if obj is None or isinstance(obj, (str, int, float, bool)):
        return obj
    if isinstance(obj, dict):
        return {str(k): stable_settings(v) for k, v in sorted(obj.items(), key=lambda kv: str(kv[0]))
                if _plain(v)}
    if isinstance(obj, (list, tuple)):
        return [stable_settings(v) for v in obj if _plain(v)]
    dump = getattr(obj, "model_dump", None)
    if callable(dump):
        try:
            data = dump(mode="json", exclude_none=True)
        except Exception:  # noqa: BLE001 - a model with unserialisable fields: keep the plain ones
            data = {k: v for k, v in vars(obj).items() if not k.startswith("_")}
        return [type(obj).__name__, stable_settings(data)]
    return type(obj).__name__


def _plain(value: Any) -> bool:
    if value is None or isinstance(value, (str, int, float, bool)):
        return True
    if isinstance(value, dict):
        return all(_plain(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return all(_plain(v) for v in value)
    return hasattr(value, "model_dump")


__all__ = ["CacheKey", "context_digest", "digest", "normalize_question", "question_guard", "stable_settings"]
