"""What a cache store is: the :class:`CacheStore` protocol, the :class:`CacheEntry` it keeps, and the registry.

A store keeps entries and answers three questions: the entry with this exact key, the nearest entries of a
bucket to a vector, and which entries to drop (age, context, tag, everything). It does not decide hits: the
thresholds do (:mod:`.thresholds`). Stores are registered by name in :data:`CACHE_STORES` (as SLM backends and
gates are) so a dumped configuration rebuilds them: ``make_store("redis", url="redis://...")``.
"""

from __future__ import annotations

import time
import uuid
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, computed_field


@dataclass
class CacheEntry:
    """One cached answer."""

    bucket: str
    """The key's bucket (context, configuration, question guards): only entries of the same bucket can match."""
    exact: str
    """The exact-match key (bucket + normalised question)."""
    context: str
    """The digest of the conversation's context (``invalidate(context=...)``)."""
    question: str
    """The question as first asked."""
    answer: str
    """The cached answer text."""
    stage: str
    """The stage that produced the answer (``slm`` or ``llm``; ``model`` for answers cached through
    LangChain's ``set_llm_cache``)."""
    vector: np.ndarray | None = None
    """The question's unit embedding (float32), when semantic matching is on."""
    tags: tuple[str, ...] = ()
    """Document or context ids given at store time (``invalidate(tag=...)``)."""
    payload: str | None = None
    """The full generations as LangChain JSON (``langchain_core.load.dumps``), for the ``BaseCache`` adapter."""
    created: float = field(default_factory=time.time)
    """When the answer was cached (Unix time)."""
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    observations: list[tuple[float, bool]] = field(default_factory=list)
    """Verified (similarity, correct) pairs of later questions matched against this entry: what the adaptive
    threshold learns from."""

    def age_s(self, now: float | None = None) -> float:
        """Seconds since the entry was cached."""
        return max(0.0, (time.time() if now is None else now) - self.created)


class CacheStore(BaseModel, ABC):
    """Where cached answers live. Implementations are thread-safe.

    Args:
        ttl_s: entries older than this many seconds are no longer served (``None``: no age limit).
        max_entries: when more entries than this are stored, the least recently used are evicted.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    store_name: ClassVar[str] = ""

    ttl_s: float | None = Field(default=None, gt=0)
    """Seconds an entry is served after it was cached; ``None``: until evicted or invalidated."""
    max_entries: int = Field(default=100_000, ge=1)
    """Most entries kept; beyond it the least recently used are evicted."""

    @computed_field  # type: ignore[prop-decorator]
    @property
    def store(self) -> str:
        """The registered name (the ``store`` key of a dumped configuration, which rebuilds this class)."""
        return type(self).store_name

    @abstractmethod
    def put(self, entry: CacheEntry) -> None:
        """Store an entry (an entry with the same exact key is replaced)."""

    def put_many(self, entries: list[CacheEntry]) -> None:
        """Store many entries (stores override it to batch the writes)."""
        for entry in entries:
            self.put(entry)

    @abstractmethod
    def get(self, exact: str) -> CacheEntry | None:
        """The live entry with this exact key, or ``None``."""

    @abstractmethod
    def nearest(self, bucket: str, vector: np.ndarray) -> tuple[CacheEntry, float] | None:
        """The live entry of ``bucket`` most similar to ``vector`` (cosine) and its similarity, or ``None``."""

    @abstractmethod
    def observe(self, entry_id: str, similarity: float, correct: bool) -> None:
        """Record a verified match against an entry (the adaptive threshold's data)."""

    @abstractmethod
    def remove(self, entry_id: str) -> None:
        """Drop one entry."""

    @abstractmethod
    def invalidate(self, *, older_than_s: float | None = None, context: str | None = None,
                   tag: str | None = None) -> int:
        """Drop the entries older than ``older_than_s``, of a context digest, or with a tag; with no argument,
        all of them. Returns how many were dropped."""

    @abstractmethod
    def __len__(self) -> int:
        """Entries stored."""

    def close(self) -> None:
        """Release connections and files."""

    def _expired(self, entry: CacheEntry, now: float) -> bool:
        return self.ttl_s is not None and now - entry.created > self.ttl_s


#: Registered store classes by name.
CACHE_STORES: dict[str, type[CacheStore]] = {}


def register_store(cls: type[CacheStore]) -> type[CacheStore]:
    """Class decorator: register a store under its ``store_name``."""
    CACHE_STORES[cls.store_name] = cls
    return cls


def make_store(name: str, **options: Any) -> CacheStore:
    """Build the registered store ``name`` (``"memory"``, ``"redis"``) with ``options``."""
    try:
        cls = CACHE_STORES[name]
    except KeyError:
        raise ValueError(f"unknown cache store {name!r}; registered: {sorted(CACHE_STORES)}") from None
    return cls(**options)


__all__ = ["CACHE_STORES", "CacheEntry", "CacheStore", "make_store", "register_store"]
