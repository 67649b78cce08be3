"""The answer cache: exact and semantic lookups, verification, feedback, invalidation, counters.

:class:`SemanticCache` is the router's cache stage (math engine -> cache -> SLM -> LLM) and the engine of the
LangChain ``BaseCache`` adapter. A lookup builds the question's :class:`~.key.CacheKey`; an entry with the same
exact key is a hit (similarity 1.0). With ``semantic=True`` the question is also embedded (all-MiniLM-L6-v2,
offline) and compared with the entries of its bucket; the nearest one is served when the threshold says so:
``similarity_threshold`` (static) or, with ``max_false_hit_rate`` set, vCache's per-entry adaptive threshold
(:mod:`.thresholds`).

Verification: when the nearest entry was close but not served, the router answers afresh and the cache compares
the two answers (:func:`answers_agree`); the outcome is an observation of that entry (the adaptive threshold's
data). A served semantic hit is verified the same way at ``verify_rate``. ``feedback(result, correct=False)``
records a user's verdict. A store that fails (Redis down) makes the lookup a miss and the write a no-op; the
``store_errors`` counter says so.
"""

from __future__ import annotations

import random
import re
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, SerializeAsAny, field_validator

from langchain_slm_router.cache.base import CacheEntry, CacheStore, make_store
from langchain_slm_router.cache.key import CacheKey, context_digest, digest
from langchain_slm_router.cache.memory import InProcessStore
from langchain_slm_router.cache.thresholds import AdaptiveThreshold, StaticThreshold, Threshold
from langchain_slm_router.text import normalize_answer

@dataclass
class CacheStats:
    """Counters of one cache (what ``/metrics`` exports)."""

    lookups: int = 0
    hits: int = 0
    exact_hits: int = 0
    semantic_hits: int = 0
    misses: int = 0
    false_hits: int = 0
    """Served answers found wrong (by verification or by a user's feedback)."""
    verified: int = 0
    """Verified comparisons of a fresh answer with a close cached one."""
    stored: int = 0
    store_errors: int = 0
    """Store calls that failed (each a miss or a skipped write)."""
    lookup_seconds: float = 0.0
    """Total time spent in lookups."""

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


@dataclass
class CacheProbe:
    """The outcome of one lookup, carried until the answer is known."""

    key: CacheKey
    tags: tuple[str, ...] = ()
    vector: np.ndarray | None = None
    entry: CacheEntry | None = None
    """The served entry (hit), or the close entry whose answer will be compared with the fresh one."""
    similarity: float | None = None
    match: Literal["exact", "semantic"] | None = None
    """How the served entry matched (``None``: a miss)."""
    verify: bool = False
    """The fresh answer is to be compared with ``entry``'s."""
    sampled: bool = False
    """The threshold would have served ``entry``; it is verified instead (``verify_rate``)."""
    p_wrong: float | None = None
    lookup_ms: float = 0.0
    stored: CacheEntry | None = field(default=None, repr=False)

    @property
    def hit(self) -> bool:
        return self.match is not None


class SemanticCache(BaseModel):
    """An answer cache keyed on the question and an exact digest of everything else that shapes the answer.

    Args:
        store: where entries live: :class:`~.memory.InProcessStore` (default; ``path=`` persists it to SQLite) or
            :class:`~.redis_store.RedisStore` (shared by replicas); a dict builds the registered store its
            ``store`` key names.
        semantic: also serve paraphrases (embedding similarity within the same context); off = exact match of
            the normalised question only.
        similarity_threshold: the static threshold (cosine similarity) of semantic matching.
        max_false_hit_rate: set it to use the adaptive per-entry threshold with this bound on the probability
            that a served answer is wrong (vCache); ``None``: the static threshold.
        verify_rate: fraction of semantic hits answered afresh anyway and compared (learning at a model call's cost).
        answer_agreement: two answers agree when their normalised text is equal or their embeddings' cosine
            similarity is at least this.
        min_similarity: neighbours less similar than this are neither served nor verified.

    Example:
        .. code-block:: python

            from langchain_slm_router import SLMRouter
            from langchain_slm_router.cache import RedisStore, SemanticCache

            router = SLMRouter(cache=SemanticCache(semantic=True, max_false_hit_rate=0.01,
                                                   store=RedisStore(url="redis://127.0.0.1:6379/0")))
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    store: SerializeAsAny[CacheStore] = Field(default_factory=InProcessStore)
    """The store (in-process by default)."""
    semantic: bool = False
    """Serve paraphrases within the same context, not only the exact normalised question."""
    similarity_threshold: float = Field(default=0.9, ge=0.0, le=1.0)
    """Static threshold: cosine similarity at or above which the nearest entry is served."""
    max_false_hit_rate: float | None = Field(default=None, gt=0.0, lt=1.0)
    """Use vCache's adaptive per-entry threshold with this error bound instead of the static one."""
    verify_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    """Fraction of semantic hits re-answered and compared (online learning at the cost of model calls)."""
    answer_agreement: float = Field(default=0.9, ge=0.0, le=1.0)
    """Cosine similarity of two answers' embeddings at which they count as the same answer."""
    min_similarity: float = Field(default=0.5, ge=-1.0, le=1.0)
    """Neighbours below this similarity are neither served nor verified."""
    embeddings: Any = None
    """A LangChain ``Embeddings`` (default: the offline :class:`~langchain_slm_router.embeddings.MiniLMEmbeddings`)."""
    seed: int | None = None
    """Seed of the verification sampling (``None``: random)."""

    _threshold: Threshold = PrivateAttr(default=None)  # type: ignore[assignment]
    _stats: CacheStats = PrivateAttr(default_factory=CacheStats)
    _stats_lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)
    _rng: random.Random = PrivateAttr(default=None)  # type: ignore[assignment]

    @field_validator("store", mode="before")
    @classmethod
    def _store_from_dict(cls, value: Any) -> Any:
        if isinstance(value, dict):
            options = dict(value)
            return make_store(options.pop("store", InProcessStore.store_name), **options)
        return value

    def model_post_init(self, context: Any) -> None:
        if self.max_false_hit_rate is not None:
            self._threshold = AdaptiveThreshold(max_false_hit_rate=self.max_false_hit_rate, seed=self.seed)
        else:
            self._threshold = StaticThreshold(similarity=self.similarity_threshold)
        self._rng = random.Random(self.seed)

    # ------------------------------------------------------------------ parts
    @property
    def threshold(self) -> Threshold:
        """The threshold in use (static or adaptive)."""
        return self._threshold

    @property
    def stats(self) -> CacheStats:
        """The counters (a snapshot)."""
        with self._stats_lock:
            return CacheStats(**asdict(self._stats))

    def _count(self, **deltas: float) -> None:
        with self._stats_lock:
            for name, delta in deltas.items():
                setattr(self._stats, name, getattr(self._stats, name) + delta)

    def _embedder(self) -> Any:
        if self.embeddings is None or isinstance(self.embeddings, dict):  # a dumped configuration: MiniLM's
            from langchain_slm_router.embeddings import MiniLMEmbeddings

            self.embeddings = MiniLMEmbeddings(**(self.embeddings or {}))
        return self.embeddings

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Unit embeddings of ``texts`` (float32 rows)."""
        vecs = np.asarray(self._embedder().embed_documents(list(texts)), dtype=np.float32)
        norms = np.linalg.norm(vecs, axis=1, keepdims=True)
        return vecs / np.maximum(norms, 1e-12)

    def _safe(self, fn: Any, *args: Any, failed: Any = None, **kwargs: Any) -> Any:
        """Call a store method; any failure is counted and returns ``failed`` (a miss, or a skipped write)."""
        try:
            return fn(*args, **kwargs)
        except Exception:  # noqa: BLE001 - a cache must never fail the request it serves
            self._count(store_errors=1)
            return failed

    # ------------------------------------------------------------------ lookup
    def lookup(self, conversations: Sequence[Sequence[dict[str, str]]], config: str = "",
               tags: Iterable[str] = ()) -> list[CacheProbe]:
        """Look up conversations (role/content dicts, the last one the question) under the configuration digest
        ``config``; ``tags`` are stored with the answers (``invalidate(tag=...)``)."""
        start = time.perf_counter()
        tags = tuple(tags)
        probes = [CacheProbe(key=CacheKey.build(conv, config), tags=tags) for conv in conversations]
        for probe in probes:
            entry = self._safe(self.store.get, probe.key.exact)
            if entry is not None:
                probe.entry, probe.similarity, probe.match = entry, 1.0, "exact"
        todo = [p for p in probes if not p.hit] if self.semantic else []
        if todo:
            vectors = self._safe(self.embed, [p.key.question for p in todo])
            for i, probe in enumerate(todo if vectors is not None else []):
                probe.vector = vectors[i]
                self._match(probe)
        elapsed = (time.perf_counter() - start)
        hits = [p for p in probes if p.hit]
        for probe in probes:
            probe.lookup_ms = round(elapsed * 1000.0 / len(probes), 3)
        self._count(lookups=len(probes), hits=len(hits), misses=len(probes) - len(hits),
                    exact_hits=sum(p.match == "exact" for p in hits),
                    semantic_hits=sum(p.match == "semantic" for p in hits), lookup_seconds=elapsed)
        return probes

    def _match(self, probe: CacheProbe) -> None:
        found = self._safe(self.store.nearest, probe.key.bucket, probe.vector)
        if found is None:
            return
        entry, similarity = found
        if similarity < self.min_similarity:
            return
        decision = self._threshold.decide(similarity, entry.observations)
        probe.entry, probe.similarity, probe.p_wrong = entry, similarity, decision.p_wrong
        if decision.hit and not (self.verify_rate and self._rng.random() < self.verify_rate):
            probe.match = "semantic"
        elif decision.hit or self.max_false_hit_rate is not None:  # sampled, or data for the adaptive threshold
            probe.verify, probe.sampled = True, decision.hit

    # ------------------------------------------------------------------ store and learn
    def answers_agree(self, a: str, b: str) -> bool:
        """Whether two answers are the same answer (normalised text, or embeddings at ``answer_agreement``)."""
        if normalize_answer(a) == normalize_answer(b):
            return True
        vecs = self._safe(self.embed, [a, b])
        return vecs is not None and float(vecs[0] @ vecs[1]) >= self.answer_agreement

    def observe(self, entry_id: str, similarity: float, correct: bool) -> None:
        """Record a verified outcome of serving entry ``entry_id`` at ``similarity``."""
        self._safe(self.store.observe, entry_id, similarity, correct)
        self._threshold.learn(similarity, correct)

    def record(self, probe: CacheProbe, answer: str, stage: str, payload: str | None = None) -> CacheEntry | None:
        """Store the fresh answer of a missed lookup; first compare it with the close entry when one was
        verified. An answer that agrees with that entry adds an exact-match entry only (the neighbour keeps
        serving the paraphrases); otherwise the new entry is searchable too."""
        if probe.hit:
            return None
        searchable = probe.vector is not None
        if probe.verify and probe.entry is not None and probe.similarity is not None:
            agree = self.answers_agree(answer, probe.entry.answer)
            self._count(verified=1, false_hits=int(probe.sampled and not agree))
            self.observe(probe.entry.id, probe.similarity, agree)
            searchable = searchable and not agree
        entry = CacheEntry(bucket=probe.key.bucket, exact=probe.key.exact, context=probe.key.context,
                           question=probe.key.question, answer=answer, stage=stage, tags=probe.tags,
                           payload=payload, vector=probe.vector if searchable else None)
        if self._safe(self.store.put, entry, failed=False) is False:
            return None
        self._count(stored=1)
        probe.stored = entry
        return entry

    def feedback(self, entry_id: str, correct: bool, similarity: float | None = None,
                 match: str | None = None) -> None:
        """A verdict on an answer: a wrong cache hit becomes a negative observation of the entry that served it
        (an exact hit, or a wrong fresh answer, removes the entry); a right one a positive observation."""
        if similarity is not None and match == "semantic":
            self.observe(entry_id, similarity, correct)
        if not correct:
            if match is not None:
                self._count(false_hits=1)
            if match != "semantic":
                self._safe(self.store.remove, entry_id)

    # ------------------------------------------------------------------ invalidation
    def invalidate(self, *, older_than_s: float | None = None, context: Any = None, tag: str | None = None) -> int:
        """Drop cached answers: older than ``older_than_s`` seconds, given in ``context`` (a conversation's
        context digest, or the context messages themselves: system prompt, documents, earlier turns), or stored
        with ``tag``; with no argument, everything. Returns how many were dropped (0 when the store is down)."""
        if context is not None and not (isinstance(context, str) and re.fullmatch(r"[0-9a-f]{64}", context)):
            context = context_of(context)
        return int(self._safe(self.store.invalidate, older_than_s=older_than_s, context=context, tag=tag) or 0)

    def clear(self) -> int:
        """Drop every cached answer."""
        return self.invalidate()


def context_of(messages: Any) -> str:
    """The context digest of context messages (system prompt, retrieved documents, earlier turns): what a
    question asked after them is keyed on."""
    from langchain_slm_router.messages import Conversation, to_messages

    dicts = Conversation(to_messages(messages)).dicts if messages else []
    return context_digest([*dicts, {"role": "user", "content": ""}])


def config_digest(*parts: Any) -> str:
    """Digest of the settings that shape an answer besides the conversation (see :func:`.key.stable_settings`)."""
    from langchain_slm_router.cache.key import stable_settings

    return digest([stable_settings(p) for p in parts])


__all__ = ["CacheProbe", "CacheStats", "SemanticCache", "config_digest", "context_of"]
