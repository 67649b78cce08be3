"""The answer cache live: real Redis (127.0.0.1:6379), the real MiniLM embeddings, the real SLM, the server.

Without Redis these tests are skipped with a reason; under ``CI=true`` a missing Redis is a failure.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from langchain_slm_router.testing.processes import free_port

from langchain_slm_router import SLMRouter
from langchain_slm_router.cache import CacheEntry, CacheKey, RedisStore, SemanticCache, SLMRouterCache
from langchain_slm_router.errors import CacheUnavailableError
from langchain_slm_router.math_engine import MathEngine

sys.path.insert(0, str(Path(__file__).parents[1] / "unit"))
from test_router_scripted import SURE, make_router  # noqa: E402

pytestmark = pytest.mark.integration
REDIS_URL = os.environ.get("SLM_ROUTER_TEST_REDIS", "redis://127.0.0.1:6379/0")


@pytest.fixture(scope="module")
def redis_url() -> str:
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_timeout=2, socket_connect_timeout=2).ping()
    except (redis.RedisError, OSError) as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"Redis is required under CI=true and {REDIS_URL} does not answer: {exc}")
        pytest.skip(f"no Redis at {REDIS_URL} ({exc}); start one to run these tests")
    return REDIS_URL


@pytest.fixture
def prefix(redis_url: str) -> Iterator[str]:
    """A key prefix of this test's own, deleted afterwards."""
    import redis

    name = f"test-cache-{uuid.uuid4().hex[:10]}"
    yield name
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(match=f"{name}:*"))
    if keys:
        client.delete(*keys)


@pytest.fixture(scope="module")
def minilm():
    from langchain_slm_router.embeddings import MiniLMEmbeddings

    emb = MiniLMEmbeddings()
    emb.embed_query("warm up")
    return emb


def test_two_routers_share_hits_through_redis(slm, redis_url: str, prefix: str, minilm) -> None:
    def replica() -> SLMRouter:
        cache = SemanticCache(semantic=True, similarity_threshold=0.8, embeddings=minilm,
                              store=RedisStore(url=redis_url, prefix=prefix))
        return SLMRouter(slm=slm.model_copy(update={"max_new_tokens": 16}), fallback=None, answer_cache=cache,
                         math_engine=None, gate="threshold").with_options(threshold=0.0)  # keep every SLM answer

    first, second = replica(), replica()
    answered = first.route("What is the capital of France?")
    assert answered.stage == "slm" and answered.cache_entry_id is not None
    served = second.route("Which city is the capital of France?")  # a paraphrase, another process's store
    assert served.stage == "cache" and served.cache_match == "semantic" and served.answer == answered.answer
    assert served.cached_stage == "slm" and 0.8 <= served.cache_similarity < 1.0
    assert second.route("What is the capital of Germany?").stage == "slm"  # different question
    assert second.route([("system", "Answer in French."), ("human", "What is the capital of France?")]).stage == "slm"


def test_math_is_never_served_and_numbers_never_match(redis_url: str, prefix: str, minilm) -> None:
    cache = SemanticCache(semantic=True, similarity_threshold=0.5, embeddings=minilm,
                          store=RedisStore(url=redis_url, prefix=prefix))
    router = make_router(answer_cache=cache).with_options(math_engine=MathEngine())
    assert [router.route(q).answer for q in ("What is 15% of 240?", "What is 15% of 250?")] == ["36", "75/2"]
    assert router.route("What is 15% of 240?").stage == "math"
    router.slm.script = {"How many people lived in Lyon in 1990?": SURE, "How many people lived in Lyon in 1999?": SURE}
    assert router.route("How many people lived in Lyon in 1990?").stage == "slm"
    assert router.route("How many people lived in Lyon in 1999?").stage == "slm"  # similar words, other number
    assert len(cache.store) == 2


def test_ttl_eviction_and_invalidation_on_redis(redis_url: str, prefix: str) -> None:
    rng = np.random.default_rng(0)

    def put(store: RedisStore, question: str, context: str = "", tags: tuple[str, ...] = ()) -> CacheKey:
        key = CacheKey.build(([{"role": "system", "content": context}] if context else [])
                             + [{"role": "user", "content": question}], "cfg")
        vec = rng.standard_normal(384).astype(np.float32)
        store.put(CacheEntry(bucket=key.bucket, exact=key.exact, context=key.context, question=question,
                             answer=f"answer to {question}", stage="slm", vector=vec / np.linalg.norm(vec), tags=tags))
        return key

    short = RedisStore(url=redis_url, prefix=prefix + "-ttl", ttl_s=0.5)
    key = put(short, "short lived")
    assert short.get(key.exact) is not None
    time.sleep(0.7)
    assert short.get(key.exact) is None and short.nearest(key.bucket, np.ones(384, np.float32) / 384**0.5) is None
    short.invalidate()

    a = RedisStore(url=redis_url, prefix=prefix, max_entries=3)
    b = RedisStore(url=redis_url, prefix=prefix, max_entries=3)
    keys = [put(a, f"question {i}", context="doc A" if i % 2 else "doc B", tags=(f"t{i}",)) for i in range(4)]
    assert len(b) == 3 and b.get(keys[0].exact) is None  # the least recently used was evicted
    assert b.nearest(keys[3].bucket, np.ones(384, np.float32)) is not None  # b's index read a's vectors
    assert b.invalidate(tag="t3") == 1 and a.get(keys[3].exact) is None
    assert a.invalidate(context=keys[2].context) == 1 and b.get(keys[2].exact) is None
    assert a.invalidate() == 1 and len(b) == 0
    assert b.nearest(keys[1].bucket, np.ones(384, np.float32)) is None  # b rebuilt its index after the clear



def test_a_killed_redis_degrades_to_misses(tmp_path: Path) -> None:
    server = shutil.which("redis-server")
    if server is None:
        pytest.skip("redis-server is not installed here: cannot start and kill a private Redis")
    port = free_port()
    proc = subprocess.Popen([server, "--port", str(port), "--save", "", "--appendonly", "no", "--dir", str(tmp_path)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        import redis

        for _ in range(50):
            try:
                redis.Redis(port=port).ping()
                break
            except redis.ConnectionError:
                time.sleep(0.1)
        store = RedisStore(url=f"redis://127.0.0.1:{port}/0", prefix="killed", timeout_s=0.3, retry_after_s=30)
        router = make_router(answer_cache=SemanticCache(store=store))
        assert router.route("sure?").stage == "slm" and router.route("sure?").stage == "cache"
    finally:
        proc.kill()
        proc.wait()
    start = time.perf_counter()
    results = [router.route("sure?") for _ in range(5)]
    assert [r.stage for r in results] == ["slm"] * 5  # misses, answered by the SLM, no error
    assert time.perf_counter() - start < 3.0  # one time-out, then the store is skipped while it is down
    assert router.answer_cache.stats.store_errors >= 5
    with pytest.raises(CacheUnavailableError):
        store.get("anything")


async def test_fifty_concurrent_tasks_on_redis_lose_nothing(redis_url: str, prefix: str) -> None:
    router = make_router(answer_cache=SemanticCache(store=RedisStore(url=redis_url, prefix=prefix)))
    router.slm.script = {f"question {i}?": SURE for i in range(50)}
    first = await asyncio.gather(*(router.aroute(f"question {i}?") for i in range(50)))
    assert all(r.stage == "slm" for r in first)
    other = make_router(answer_cache=SemanticCache(store=RedisStore(url=redis_url, prefix=prefix)))
    other.slm.script = router.slm.script  # the same configuration: another replica
    again = await asyncio.gather(*(asyncio.to_thread(other.route, f"question {i}?") for i in range(50)))
    assert all(r.stage == "cache" for r in again) and len(other.answer_cache.store) == 50
    entry_id = first[0].cache_entry_id
    await asyncio.gather(*(asyncio.to_thread(other.answer_cache.store.observe, entry_id, 0.9, i % 2 == 0)
                           for i in range(50)))
    stored = router.answer_cache.store._fetch(entry_id)  # noqa: SLF001 - read the entry by id
    assert len(stored.observations) == 50 and sum(c for _, c in stored.observations) == 25


def test_the_server_serves_hits_honours_the_opt_out_and_counts(tmp_path: Path) -> None:
    from langchain_slm_router.server import RouterServer, ServerSettings

    router = make_router()
    router.slm.script = {"sure?": SURE}
    with RouterServer(router, ServerSettings(port=0)) as srv:
        body = {"model": "slm-router", "messages": [{"role": "user", "content": "sure?"}]}
        url = f"{srv.openai_base_url}/chat/completions"
        first = httpx.post(url, json=body, timeout=30)
        second = httpx.post(url, json=body, timeout=30)
        skipped = httpx.post(url, json=body, headers={"x-slm-router-cache": "off"}, timeout=30)
        ollama = httpx.post(f"{srv.base_url}/api/chat", json={**body, "stream": False}, timeout=30,
                            headers={"Cache-Control": "no-cache"})
        metrics = httpx.get(f"{srv.base_url}/metrics", timeout=30).text
    assert first.headers["x-slm-router-stage"] == "slm"
    assert second.headers["x-slm-router-stage"] == "cache" and second.headers["x-slm-router-cache"].startswith("exact")
    assert second.json()["choices"][0]["message"]["content"] == first.json()["choices"][0]["message"]["content"]
    assert skipped.headers["x-slm-router-stage"] == "slm" and ollama.headers["x-slm-router-stage"] == "slm"
    assert 'slm_router_cache_lookups_total{outcome="hit_exact"} 1.0' in metrics
    assert 'slm_router_cache_lookups_total{outcome="miss"} 1.0' in metrics
    assert "slm_router_cache_lookup_seconds_count 2.0" in metrics and "slm_router_cache_false_hits_total" in metrics


def test_langchain_base_cache_serves_any_chat_model(minilm) -> None:
    from langchain_core.globals import get_llm_cache, set_llm_cache
    from langchain_core.language_models.fake_chat_models import FakeListChatModel

    model = FakeListChatModel(responses=["Paris", "Berlin", "third call"])
    previous = get_llm_cache()
    set_llm_cache(SLMRouterCache(SemanticCache(semantic=True, similarity_threshold=0.8, embeddings=minilm)))
    try:
        assert model.invoke("What is the capital of France?").content == "Paris"
        assert model.invoke("What is the capital of France?").content == "Paris"  # exact hit
        assert model.invoke("Which city is the capital of France?").content == "Paris"  # semantic hit
        assert model.invoke("What is the capital of Germany?").content == "Berlin"  # a miss: the model ran
        assert model.invoke([("system", "Be brief."), ("human", "What is the capital of France?")]).content == \
            "third call"  # another context
    finally:
        set_llm_cache(previous)
