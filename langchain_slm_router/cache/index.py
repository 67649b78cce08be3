"""Nearest-neighbour search over the cached questions' embeddings, one partition per bucket.

A bucket holds the unit vectors of the entries that may match each other (see :mod:`.key`). Small buckets are
searched exactly with one numpy matrix-vector product. A bucket that grows past ``ann_min_rows`` also gets an HNSW
graph (`usearch <https://pypi.org/project/usearch/>`_, the ``cache`` extra) so a lookup stays in the low
milliseconds at 100k entries; its few candidates are re-scored exactly. New rows join the graph in one batch at
the next search (the first search after a large fill pays for building it). Without usearch every bucket is
exact.
"""

from __future__ import annotations

import importlib.util
import threading

import numpy as np

#: Rows above which a bucket is searched through an HNSW graph (when usearch is installed).
ANN_MIN_ROWS = 5_000


def ann_available() -> bool:
    """Whether usearch (the HNSW library) is installed."""
    return importlib.util.find_spec("usearch") is not None


class _Bucket:
    """The vectors of one bucket: a growing float32 matrix, row ids, and an optional HNSW graph."""

    def __init__(self, dim: int) -> None:
        self.dim = dim
        self.rows = np.zeros((16, dim), dtype=np.float32)
        self.ids: list[str] = []
        self.pos: dict[str, int] = {}
        self.ann = None  # usearch.index.Index over row keys
        self.pending: set[int] = set()  # keys of rows not yet in the graph (added in one batch at the next search)
        self.keys: list[int] = []  # ann key of each row
        self.key_row: dict[int, int] = {}
        self.next_key = 0

    def __len__(self) -> int:
        return len(self.ids)

    def add(self, entry_id: str, vec: np.ndarray) -> None:
        if entry_id in self.pos:
            self.rows[self.pos[entry_id]] = vec
            return
        n = len(self.ids)
        if n == len(self.rows):
            grown = np.zeros((len(self.rows) * 2, self.dim), dtype=np.float32)
            grown[:n] = self.rows[:n]
            self.rows = grown
        self.rows[n] = vec
        self.ids.append(entry_id)
        self.pos[entry_id] = n
        key = self.next_key
        self.next_key += 1
        self.keys.append(key)
        self.key_row[key] = n
        self.pending.add(key)

    def _update_ann(self, ann_min_rows: int) -> None:
        """Build the graph once the bucket is large enough, and add the pending rows to it in one batch."""
        if self.ann is None:
            if len(self.ids) < ann_min_rows or not ann_available():
                return
            from usearch.index import Index

            self.ann = Index(ndim=self.dim, metric="ip", dtype="f32", connectivity=16, expansion_add=64,
                             expansion_search=64)
        if self.pending:
            keys = np.fromiter(self.pending, dtype=np.uint64, count=len(self.pending))
            rows = np.asarray([self.key_row[int(k)] for k in keys], dtype=np.int64)
            self.ann.add(keys, self.rows[rows], threads=0 if len(keys) > 1000 else 1)  # 0: every core (a big fill)
            self.pending.clear()

    def remove(self, entry_id: str) -> None:
        row = self.pos.pop(entry_id, None)
        if row is None:
            return
        last = len(self.ids) - 1
        key = self.keys[row]
        if key in self.pending:
            self.pending.discard(key)
        elif self.ann is not None:
            self.ann.remove(key)
        del self.key_row[key]
        if row != last:  # move the last row into the hole
            moved_id, moved_key = self.ids[last], self.keys[last]
            self.rows[row] = self.rows[last]
            self.ids[row], self.keys[row] = moved_id, moved_key
            self.pos[moved_id] = row
            self.key_row[moved_key] = row
        self.ids.pop()
        self.keys.pop()

    def nearest(self, vec: np.ndarray, k: int, ann_min_rows: int) -> list[tuple[str, float]]:
        n = len(self.ids)
        if n == 0:
            return []
        self._update_ann(ann_min_rows)
        if self.ann is not None:
            found = self.ann.search(vec, min(max(k, 8), n), threads=1)
            rows = np.asarray([self.key_row[int(key)] for key in found.keys if int(key) in self.key_row],
                              dtype=np.int64)
            if len(rows) == 0:
                return []
            sims = self.rows[rows] @ vec
        else:
            rows = None
            sims = self.rows[:n] @ vec
        order = np.argsort(-sims)[:k] if len(sims) > k else np.argsort(-sims)
        picked = rows[order] if rows is not None else order
        return [(self.ids[int(r)], float(sims[i])) for r, i in zip(picked, order)]


class VectorIndex:
    """Unit vectors by bucket; thread-safe; ``nearest`` gives cosine similarities (dot products of unit vectors)."""

    def __init__(self, dim: int = 384, ann_min_rows: int = ANN_MIN_ROWS) -> None:
        self.dim = dim
        self.ann_min_rows = ann_min_rows
        self._buckets: dict[str, _Bucket] = {}
        self._where: dict[str, str] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._where)

    def __contains__(self, entry_id: str) -> bool:
        return entry_id in self._where

    def add(self, bucket: str, entry_id: str, vector: np.ndarray) -> None:
        vec = np.asarray(vector, dtype=np.float32).reshape(-1)
        if vec.shape[0] != self.dim:
            raise ValueError(f"expected a {self.dim}-dimensional vector, got {vec.shape[0]}")
        with self._lock:
            old = self._where.get(entry_id)
            if old is not None and old != bucket:
                self._buckets[old].remove(entry_id)
            self._buckets.setdefault(bucket, _Bucket(self.dim)).add(entry_id, vec)
            self._where[entry_id] = bucket

    def remove(self, entry_id: str) -> None:
        with self._lock:
            bucket = self._where.pop(entry_id, None)
            if bucket is not None:
                part = self._buckets[bucket]
                part.remove(entry_id)
                if not len(part):
                    del self._buckets[bucket]

    def nearest(self, bucket: str, vector: np.ndarray, k: int = 1) -> list[tuple[str, float]]:
        """The ``k`` most similar entries of ``bucket``, best first, as (id, cosine similarity)."""
        vec = np.asarray(vector, dtype=np.float32).reshape(-1)
        with self._lock:
            part = self._buckets.get(bucket)
            return part.nearest(vec, k, self.ann_min_rows) if part is not None else []

    def clear(self) -> None:
        with self._lock:
            self._buckets.clear()
            self._where.clear()


__all__ = ["ANN_MIN_ROWS", "VectorIndex", "ann_available"]
