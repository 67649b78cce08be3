"""The embedded default store: entries in process memory, optionally persisted to SQLite so they survive restarts.

Lookups never touch the disk: the entries, the exact-key map and the vectors (:class:`.index.VectorIndex`) are in
memory; each change is written through to the SQLite file (vectors as float32 bytes, observations and tags as
JSON; no pickle). Several processes may open the same file; each loads it at start and writes its own entries.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field, PrivateAttr

from langchain_slm_router.cache.base import CacheEntry, CacheStore, register_store
from langchain_slm_router.cache.index import ANN_MIN_ROWS, VectorIndex

_SCHEMA = """
CREATE TABLE IF NOT EXISTS cache_entries (
    id TEXT PRIMARY KEY, bucket TEXT NOT NULL, exact_key TEXT NOT NULL, context TEXT NOT NULL,
    question TEXT NOT NULL, answer TEXT NOT NULL, stage TEXT NOT NULL, created REAL NOT NULL,
    vector BLOB, tags TEXT NOT NULL, payload TEXT, observations TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS cache_entries_exact ON cache_entries (exact_key);
"""


@register_store
class InProcessStore(CacheStore):
    """Entries in memory, written through to SQLite when ``path`` is set.

    Args:
        path: the SQLite file; ``None`` keeps the cache in memory only (lost when the process ends).
        ttl_s: seconds an entry is served (``None``: no age limit).
        max_entries: most entries kept (least recently used evicted).
        ann_min_rows: a bucket with more entries than this is searched through an HNSW graph (usearch).
    """

    store_name = "memory"

    path: Path | None = None
    """SQLite file the cache persists to; ``None``: memory only."""
    ann_min_rows: int = Field(default=ANN_MIN_ROWS, ge=1)
    """Entries per bucket above which lookups use the HNSW graph (when usearch is installed)."""

    _entries: OrderedDict[str, CacheEntry] = PrivateAttr(default_factory=OrderedDict)
    _exact: dict[str, str] = PrivateAttr(default_factory=dict)
    _index: VectorIndex | None = PrivateAttr(default=None)
    _lock: threading.RLock = PrivateAttr(default_factory=threading.RLock)
    _db: sqlite3.Connection | None = PrivateAttr(default=None)

    def model_post_init(self, context: Any) -> None:
        self._index = VectorIndex(ann_min_rows=self.ann_min_rows)
        if self.path is not None:
            path = Path(self.path).expanduser()
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.executescript(_SCHEMA)
            self._load()

    # ------------------------------------------------------------------ persistence
    def _load(self) -> None:
        assert self._db is not None
        rows = self._db.execute("SELECT id, bucket, exact_key, context, question, answer, stage, created, vector, "
                                "tags, payload, observations FROM cache_entries ORDER BY created").fetchall()
        for (id_, bucket, exact, context, question, answer, stage, created, vector, tags, payload, obs) in rows:
            entry = CacheEntry(
                id=id_, bucket=bucket, exact=exact, context=context, question=question, answer=answer, stage=stage,
                created=created, vector=np.frombuffer(vector, dtype=np.float32).copy() if vector else None,
                tags=tuple(json.loads(tags)), payload=payload,
                observations=[(float(s), bool(c)) for s, c in json.loads(obs)],
            )
            self._insert(entry)

    def _write(self, entry: CacheEntry) -> None:
        if self._db is None:
            return
        vector = entry.vector.astype(np.float32).tobytes() if entry.vector is not None else None
        self._db.execute(
            "INSERT OR REPLACE INTO cache_entries VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            (entry.id, entry.bucket, entry.exact, entry.context, entry.question, entry.answer, entry.stage,
             entry.created, vector, json.dumps(list(entry.tags)), entry.payload,
             json.dumps([[s, c] for s, c in entry.observations])),
        )

    def _delete_rows(self, ids: list[str]) -> None:
        if self._db is not None and ids:
            self._db.executemany("DELETE FROM cache_entries WHERE id = ?", [(i,) for i in ids])

    # ------------------------------------------------------------------ memory
    def _insert(self, entry: CacheEntry) -> list[str]:
        """Put an entry in memory; returns the ids dropped (a replaced entry, evicted ones)."""
        dropped = []
        old = self._exact.get(entry.exact)
        if old is not None and old != entry.id:
            self._drop(old)
            dropped.append(old)
        self._entries[entry.id] = entry
        self._entries.move_to_end(entry.id)
        self._exact[entry.exact] = entry.id
        if entry.vector is not None:
            self._index.add(entry.bucket, entry.id, entry.vector)  # type: ignore[union-attr]
        while len(self._entries) > self.max_entries:
            victim = next(iter(self._entries))
            self._drop(victim)
            dropped.append(victim)
        return dropped

    def _drop(self, entry_id: str) -> None:
        entry = self._entries.pop(entry_id, None)
        if entry is None:
            return
        if self._exact.get(entry.exact) == entry_id:
            del self._exact[entry.exact]
        self._index.remove(entry_id)  # type: ignore[union-attr]

    def _live(self, entry_id: str | None, now: float) -> CacheEntry | None:
        entry = self._entries.get(entry_id) if entry_id is not None else None
        if entry is None:
            return None
        if self._expired(entry, now):
            self._drop(entry_id)  # type: ignore[arg-type]
            self._delete_rows([entry_id])  # type: ignore[list-item]
            return None
        self._entries.move_to_end(entry.id)  # recently used
        return entry

    # ------------------------------------------------------------------ protocol
    def put(self, entry: CacheEntry) -> None:
        with self._lock:
            dropped = self._insert(entry)
            self._delete_rows(dropped)
            self._write(entry)

    def put_many(self, entries: list[CacheEntry]) -> None:
        """Store many entries (one SQLite transaction)."""
        with self._lock:
            for entry in entries:
                self._delete_rows(self._insert(entry))
            if self._db is not None:
                self._db.execute("BEGIN")
                for entry in entries:
                    self._write(entry)
                self._db.execute("COMMIT")

    def get(self, exact: str) -> CacheEntry | None:
        with self._lock:
            return self._live(self._exact.get(exact), time.time())

    def nearest(self, bucket: str, vector: np.ndarray) -> tuple[CacheEntry, float] | None:
        found = self._index.nearest(bucket, vector, k=1)  # type: ignore[union-attr]
        if not found:
            return None
        with self._lock:
            entry = self._live(found[0][0], time.time())
        return (entry, found[0][1]) if entry is not None else None

    def observe(self, entry_id: str, similarity: float, correct: bool) -> None:
        with self._lock:
            entry = self._entries.get(entry_id)
            if entry is not None:
                entry.observations.append((float(similarity), bool(correct)))
                self._write(entry)

    def remove(self, entry_id: str) -> None:
        with self._lock:
            self._drop(entry_id)
            self._delete_rows([entry_id])

    def invalidate(self, *, older_than_s: float | None = None, context: str | None = None,
                   tag: str | None = None) -> int:
        now = time.time()
        with self._lock:
            if older_than_s is None and context is None and tag is None:
                ids = list(self._entries)
            else:
                ids = [e.id for e in self._entries.values()
                       if (older_than_s is not None and now - e.created > older_than_s)
                       or (context is not None and e.context == context)
                       or (tag is not None and tag in e.tags)]
            for entry_id in ids:
                self._drop(entry_id)
            self._delete_rows(ids)
            return len(ids)

    def __len__(self) -> int:
        return len(self._entries)

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None


__all__ = ["InProcessStore"]
