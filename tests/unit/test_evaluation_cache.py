"""The on-disk generation cache: keyed by (kind, model, prompt, settings), atomic, can be switched off."""

from __future__ import annotations

from langchain_slm_router.evaluation.cache import GenerationCache


def test_roundtrip_and_keys(tmp_path) -> None:
    cache = GenerationCache(tmp_path / "c")
    settings = {"max_new_tokens": 24, "temperature": 0.0}
    assert cache.get("slm", "m", "q", settings) is None
    cache.put("slm", "m", "q", settings, {"text": "a", "latency_ms": 12.5})
    assert cache.get("slm", "m", "q", settings) == {"text": "a", "latency_ms": 12.5}
    # any part of the key changes the entry
    assert cache.get("slm", "m", "q", {**settings, "max_new_tokens": 25}) is None
    assert cache.get("llm", "m", "q", settings) is None
    assert cache.get("slm", "m2", "q", settings) is None
    assert cache.get("slm", "m", "q ", settings) is None
    assert (cache.hits, cache.misses) == (1, 5)
    # a new cache object over the same folder sees the entry; no temporary files are left behind
    assert GenerationCache(tmp_path / "c").get("slm", "m", "q", settings) is not None
    assert not list((tmp_path / "c").rglob(".tmp-*"))


def test_get_or_compute_and_disabled(tmp_path) -> None:
    calls = []
    cache = GenerationCache(tmp_path)
    compute = lambda: calls.append(1) or {"v": len(calls)}  # noqa: E731
    assert cache.get_or_compute("k", "m", "p", {}, compute) == ({"v": 1}, False)
    assert cache.get_or_compute("k", "m", "p", {}, compute) == ({"v": 1}, True)
    off = GenerationCache(tmp_path / "off", enabled=False)
    assert off.get_or_compute("k", "m", "p", {}, compute) == ({"v": 2}, False)
    assert off.get_or_compute("k", "m", "p", {}, compute) == ({"v": 3}, False)
    assert not (tmp_path / "off").exists()


def test_corrupt_entry_is_a_miss(tmp_path) -> None:
    cache = GenerationCache(tmp_path)
    cache.put("slm", "m", "q", {}, {"text": "a"})
    entry = next(tmp_path.rglob("*.json"))
    entry.write_text("{not json")
    assert cache.get("slm", "m", "q", {}) is None
