"""The answer cache: a stage between the math engine and the SLM, and LangChain's ``BaseCache``.

* :mod:`.key`: what makes two answers interchangeable (the question, plus an exact digest of context,
  configuration and the question's numbers and negation);
* :mod:`.base`: the :class:`CacheStore` protocol and registry; :mod:`.memory` (in process, SQLite persistence,
  the default) and :mod:`.redis_store` (shared by replicas) implement it; :mod:`.index` is their vector search;
* :mod:`.thresholds`: static and adaptive (vCache) thresholds;
* :mod:`.semantic`: :class:`SemanticCache`, lookups, verification, feedback, invalidation and counters;
* :mod:`.langchain_cache`: :class:`SLMRouterCache`, the ``BaseCache`` adapter.

See docs/cache.md.
"""

from langchain_slm_router.cache.base import CACHE_STORES, CacheEntry, CacheStore, make_store, register_store
from langchain_slm_router.cache.key import CacheKey
from langchain_slm_router.cache.langchain_cache import SLMRouterCache
from langchain_slm_router.cache.memory import InProcessStore
from langchain_slm_router.cache.redis_store import RedisStore
from langchain_slm_router.cache.semantic import CacheProbe, CacheStats, SemanticCache, config_digest, context_of
from langchain_slm_router.cache.thresholds import AdaptiveThreshold, StaticThreshold, Threshold

__all__ = [
    "CACHE_STORES",
    "AdaptiveThreshold",
    "CacheEntry",
    "CacheKey",
    "CacheProbe",
    "CacheStats",
    "CacheStore",
    "InProcessStore",
    "RedisStore",
    "SLMRouterCache",
    "SemanticCache",
    "StaticThreshold",
    "Threshold",
    "config_digest",
    "context_of",
    "make_store",
    "register_store",
]
