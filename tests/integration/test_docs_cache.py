"""Every ```python example of docs/cache.md, in order in one namespace (the real SLM, MiniLM and Redis)."""

from __future__ import annotations

import os

import pytest

pytestmark = pytest.mark.integration


@pytest.fixture
def redis_available() -> None:
    import redis

    try:
        redis.Redis.from_url("redis://127.0.0.1:6379/0", socket_timeout=2).ping()
    except (redis.RedisError, OSError) as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"Redis is required under CI=true: {exc}")
        pytest.skip(f"docs/cache.md's Redis example needs Redis at 127.0.0.1:6379 ({exc})")
    client = redis.Redis.from_url("redis://127.0.0.1:6379/0")
    yield
    keys = list(client.scan_iter(match="docs-example:*"))
    if keys:
        client.delete(*keys)


def test_python_examples(redis_available: None, doc_examples, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # the SQLite example writes under .slm_router_cache/
    outputs = doc_examples.run("cache.md")
    assert len(outputs) == 6
    assert outputs[0].split()[:5] == ["slm", "->", "cache", "exact", "slm"] and outputs[0].split()[-1] == "True"
    stage, match, similarity = outputs[1].split()
    assert (stage, match) == ("cache", "semantic") and 0.9 <= float(similarity) < 1.0
    assert outputs[2].split() == ["1", "1"]
    assert outputs[3].strip() == "cache"  # the other replica's hit
    assert outputs[4].split()[0] == "1" and outputs[4].split()[-1] != "0"  # the tag, then everything left
    assert outputs[5].split() == ["Paris", "Paris"]
