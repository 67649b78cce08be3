"""The shared store: every ``slm-router serve`` replica (and any process) pointing at one Redis shares hits.

Everything lives in Redis (redis-py), under one key prefix:

* ``<prefix>:e:<id>``: the entry (hash: answer, stage, question, digests, tags, the vector as float32 bytes),
  with the store's TTL; ``<prefix>:x:<exact key>``: the exact-key index; ``<prefix>:o:<id>``: the entry's
  verified observations (a list, appended atomically);
* ``<prefix>:lru`` and ``<prefix>:created``: sorted sets for least-recently-used eviction (``max_entries``) and
  invalidation by age; ``<prefix>:c:<context>`` and ``<prefix>:t:<tag>``: sets for invalidation by context or tag;
* ``<prefix>:log``: a stream of (id, bucket, vector) for each entry added. Each process keeps a local search index
  of the vectors (:class:`.index.VectorIndex`) and reads the stream's new records before each lookup (one round
  trip), so a lookup is one local search plus one read of the matched entry. ``<prefix>:gen`` is bumped by
  ``invalidate()`` (everything) and makes every process rebuild its index.

Redis needs no module (plain Redis 6+). A server that is down or slow raises
:class:`~langchain_slm_router.errors.CacheUnavailableError` at once for ``retry_after_s`` seconds after a failure
(no time-out per request while it is down); the cache turns that into a miss.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import numpy as np
from pydantic import Field, PrivateAttr

from langchain_slm_router.cache.base import CacheEntry, CacheStore, register_store
from langchain_slm_router.cache.index import ANN_MIN_ROWS, VectorIndex
from langchain_slm_router.errors import CacheUnavailableError

_FIELDS = ("bucket", "exact", "context", "question", "answer", "stage", "created", "vector", "tags", "payload")


@register_store
class RedisStore(CacheStore):
    """Cache entries in Redis, shared by every process that uses the same ``url`` and ``prefix``.

    Args:
        url: the Redis URL (``redis://host:6379/0``, ``rediss://`` for TLS, ``unix:///path``).
        prefix: the key prefix; separate caches on one server use different prefixes.
        ttl_s: seconds an entry is served (Redis expires it); ``None``: until evicted or invalidated.
        max_entries: most entries kept; the least recently used are evicted.
        timeout_s: socket time-out of each Redis call.
        retry_after_s: after a failure, calls fail at once (a cache miss) for this long before Redis is tried again.
    """

    store_name = "redis"

    url: str = "redis://127.0.0.1:6379/0"
    """Redis server URL."""
    prefix: str = "slm-router:cache"
    """Key prefix of this cache."""
    timeout_s: float = Field(default=0.5, gt=0)
    """Socket (connect and read) time-out of one Redis call, in seconds."""
    retry_after_s: float = Field(default=5.0, ge=0)
    """Seconds to treat Redis as down after a failed call."""
    ann_min_rows: int = Field(default=ANN_MIN_ROWS, ge=1)
    """Entries per bucket above which the local index uses an HNSW graph (when usearch is installed)."""

    _client: Any = PrivateAttr(default=None)
    _index: VectorIndex | None = PrivateAttr(default=None)
    _last_id: bytes = PrivateAttr(default=b"0-0")
    _gen: bytes | None = PrivateAttr(default=None)
    _down_until: float = PrivateAttr(default=0.0)
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    def model_post_init(self, context: Any) -> None:
        import redis

        self._client = redis.Redis.from_url(self.url, socket_timeout=self.timeout_s,
                                            socket_connect_timeout=self.timeout_s)
        self._index = VectorIndex(ann_min_rows=self.ann_min_rows)

    # ------------------------------------------------------------------ plumbing
    def _k(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))

    def _run(self, fn: Any, *args: Any) -> Any:
        """Call ``fn``; a Redis failure marks the store down for ``retry_after_s`` and raises
        :class:`CacheUnavailableError` (so does any call while it is marked down)."""
        import redis

        if time.monotonic() < self._down_until:
            raise CacheUnavailableError(f"the Redis cache at {self.url} is down; retrying after a pause")
        try:
            return fn(*args)
        except (redis.RedisError, OSError) as exc:
            self._down_until = time.monotonic() + self.retry_after_s
            raise CacheUnavailableError(f"the Redis cache at {self.url} failed: {type(exc).__name__}: {exc}") from exc

    def _sync(self) -> None:
        """Bring the local vector index up to date with the stream (and rebuild it after ``invalidate()``)."""
        with self._lock:
            while True:
                pipe = self._client.pipeline(transaction=False)
                pipe.get(self._k("gen"))
                pipe.xread({self._k("log"): self._last_id}, count=5000)
                gen, records = pipe.execute()
                if gen != self._gen:
                    self._index.clear()  # type: ignore[union-attr]
                    self._gen, self._last_id = gen, b"0-0"
                    continue
                if not records:
                    return
                batch = records[0][1]
                for record_id, fields in batch:
                    self._index.add(fields[b"bucket"].decode(), fields[b"id"].decode(),  # type: ignore[union-attr]
                                    np.frombuffer(fields[b"vec"], dtype=np.float32))
                    self._last_id = record_id
                if len(batch) < 5000:
                    return

    def _decode(self, entry_id: str, raw: dict[bytes, bytes], obs: list[bytes]) -> CacheEntry:
        f = {k.decode(): v for k, v in raw.items()}
        vector = f.get("vector") or b""
        return CacheEntry(
            id=entry_id, bucket=f["bucket"].decode(), exact=f["exact"].decode(), context=f["context"].decode(),
            question=f["question"].decode(), answer=f["answer"].decode(), stage=f["stage"].decode(),
            created=float(f["created"]), vector=np.frombuffer(vector, dtype=np.float32).copy() if vector else None,
            tags=tuple(json.loads(f["tags"])), payload=f["payload"].decode() if f.get("payload") else None,
            observations=[(float(s), c == "1") for s, c in (o.decode().split(",") for o in obs)],
        )

    def _fetch(self, entry_id: str) -> CacheEntry | None:
        pipe = self._client.pipeline(transaction=False)
        pipe.hgetall(self._k("e", entry_id))
        pipe.lrange(self._k("o", entry_id), 0, -1)
        pipe.zadd(self._k("lru"), {entry_id: time.time()}, xx=True)
        raw, obs, _ = pipe.execute()
        if not raw:
            return None
        entry = self._decode(entry_id, raw, obs)
        return None if self._expired(entry, time.time()) else entry

    # ------------------------------------------------------------------ protocol
    def put(self, entry: CacheEntry) -> None:
        self._run(self._put_many, [entry])

    def put_many(self, entries: list[CacheEntry]) -> None:
        """Store many entries in two round trips (warming a cache from saved answers, benchmarks)."""
        for i in range(0, len(entries), 1000):
            self._run(self._put_many, entries[i:i + 1000])

    def _put_many(self, entries: list[CacheEntry]) -> None:
        pipe = self._client.pipeline(transaction=False)
        for entry in entries:
            pipe.get(self._k("x", entry.exact))
        olds = pipe.execute()
        pipe = self._client.pipeline(transaction=True)
        for entry in entries:
            self._queue_put(pipe, entry)
        pipe.zcard(self._k("lru"))
        size = pipe.execute()[-1]
        replaced = [o.decode() for o, e in zip(olds, entries) if o is not None and o.decode() != e.id]
        self._delete(replaced)
        if size > self.max_entries:
            victims = self._client.zpopmin(self._k("lru"), size - self.max_entries)
            self._delete([v.decode() for v, _ in victims])

    def _queue_put(self, pipe: Any, entry: CacheEntry) -> None:
        vector = entry.vector.astype(np.float32).tobytes() if entry.vector is not None else b""
        mapping = {"bucket": entry.bucket, "exact": entry.exact, "context": entry.context,
                   "question": entry.question, "answer": entry.answer, "stage": entry.stage,
                   "created": repr(entry.created), "vector": vector, "tags": json.dumps(list(entry.tags)),
                   "payload": entry.payload or ""}
        ekey, xkey = self._k("e", entry.id), self._k("x", entry.exact)
        pipe.hset(ekey, mapping=mapping)
        pipe.set(xkey, entry.id)
        if self.ttl_s is not None:
            ms = int(self.ttl_s * 1000)
            pipe.pexpire(ekey, ms)
            pipe.pexpire(xkey, ms)
        pipe.zadd(self._k("lru"), {entry.id: time.time()})
        pipe.zadd(self._k("created"), {entry.id: entry.created})
        pipe.sadd(self._k("c", entry.context), entry.id)
        for tag in entry.tags:
            pipe.sadd(self._k("t", tag), entry.id)
        if entry.vector is not None:
            pipe.xadd(self._k("log"), {"id": entry.id, "bucket": entry.bucket, "vec": vector},
                      maxlen=2 * self.max_entries + 1000, approximate=True)

    def _delete(self, ids: list[str]) -> None:
        if not ids:
            return
        pipe = self._client.pipeline(transaction=False)
        for entry_id in ids:
            pipe.hmget(self._k("e", entry_id), "exact", "context", "tags")
        metas = pipe.execute()
        pipe = self._client.pipeline(transaction=False)
        for entry_id, (exact, context, tags) in zip(ids, metas):
            pipe.delete(self._k("e", entry_id), self._k("o", entry_id))
            pipe.zrem(self._k("lru"), entry_id)
            pipe.zrem(self._k("created"), entry_id)
            if exact is not None:
                # only if it still points at this entry (a newer answer may have replaced it)
                pipe.eval("if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end "
                          "return 0", 1, self._k("x", exact.decode()), entry_id)
            if context is not None:
                pipe.srem(self._k("c", context.decode()), entry_id)
            for tag in json.loads(tags) if tags else []:
                pipe.srem(self._k("t", tag), entry_id)
        pipe.execute()
        for entry_id in ids:
            self._index.remove(entry_id)  # type: ignore[union-attr]

    def get(self, exact: str) -> CacheEntry | None:
        def get() -> CacheEntry | None:
            entry_id = self._client.get(self._k("x", exact))
            return self._fetch(entry_id.decode()) if entry_id is not None else None

        return self._run(get)

    def nearest(self, bucket: str, vector: np.ndarray) -> tuple[CacheEntry, float] | None:
        def nearest() -> tuple[CacheEntry, float] | None:
            self._sync()
            for entry_id, sim in self._index.nearest(bucket, vector, k=4):  # type: ignore[union-attr]
                entry = self._fetch(entry_id)
                if entry is not None:
                    return entry, sim
                self._index.remove(entry_id)  # type: ignore[union-attr]  # expired, evicted or invalidated
            return None

        return self._run(nearest)

    def observe(self, entry_id: str, similarity: float, correct: bool) -> None:
        def observe() -> None:
            okey = self._k("o", entry_id)
            pipe = self._client.pipeline(transaction=False)
            pipe.rpush(okey, f"{float(similarity):.6f},{int(bool(correct))}")
            pipe.pttl(self._k("e", entry_id))
            _, ttl = pipe.execute()
            if ttl and ttl > 0:
                self._client.pexpire(okey, ttl)

        self._run(observe)

    def remove(self, entry_id: str) -> None:
        self._run(self._delete, [entry_id])

    def invalidate(self, *, older_than_s: float | None = None, context: str | None = None,
                   tag: str | None = None) -> int:
        def invalidate() -> int:
            if older_than_s is None and context is None and tag is None:
                return self._clear()
            ids: set[str] = set()
            if older_than_s is not None:
                ids.update(v.decode() for v in
                           self._client.zrangebyscore(self._k("created"), "-inf", time.time() - older_than_s))
            if context is not None:
                ids.update(v.decode() for v in self._client.smembers(self._k("c", context)))
            if tag is not None:
                ids.update(v.decode() for v in self._client.smembers(self._k("t", tag)))
            self._delete(sorted(ids))
            return len(ids)

        return self._run(invalidate)

    def _clear(self) -> int:
        count = int(self._client.zcard(self._k("lru")))
        keys = [k for k in self._client.scan_iter(match=f"{self.prefix}:*", count=1000) if k != self._k("gen").encode()]
        for i in range(0, len(keys), 1000):
            self._client.unlink(*keys[i:i + 1000])
        self._client.incr(self._k("gen"))
        self._index.clear()  # type: ignore[union-attr]
        return count

    def __len__(self) -> int:
        return int(self._run(self._client.zcard, self._k("lru")))

    def close(self) -> None:
        if self._client is not None:
            self._client.close()


__all__ = ["RedisStore"]
