"""On-disk cache of model outputs, keyed by (kind, model, prompt, settings).

Evaluation runs are dominated by generation time; everything after it (scoring, threshold sweeps, calibration,
reports) is arithmetic on the cached per-question records. The cache stores each SLM generation with its
confidence signals and measured latency, each LLM reply with its latency, and each live router run, so a second
run with the same models, prompts and settings takes seconds and reproduces the same numbers (latencies are the
ones measured when the entry was written).

Layout: ``<root>/<kind>/<k[:2]>/<k>.json`` where ``k`` is the SHA-256 of the canonical JSON of the key. Writes
are atomic (temporary file + rename), so an interrupted run leaves no broken entries and parallel runs can share
a cache. The default root is ``.slm_router_cache/`` in the working directory (git-ignored).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

DEFAULT_CACHE_DIR = ".slm_router_cache"


class GenerationCache:
    """A content-addressed JSON cache. ``enabled=False`` makes every lookup a miss and stores nothing.

    Args:
        root: the cache folder (created on first write).
        enabled: use the cache at all.
    """

    def __init__(self, root: str | os.PathLike[str] = DEFAULT_CACHE_DIR, enabled: bool = True) -> None:
        self.root = Path(root)
        self.enabled = enabled
        self.hits = 0
        self.misses = 0

    @staticmethod
    def key(kind: str, model: str, prompt: str, settings: dict[str, Any]) -> str:
        """The SHA-256 hex key of (kind, model, prompt, settings)."""
        blob = json.dumps({"kind": kind, "model": model, "prompt": prompt, "settings": settings},
                          sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()

    def _path(self, kind: str, key: str) -> Path:
        return self.root / kind / key[:2] / f"{key}.json"

    def get(self, kind: str, model: str, prompt: str, settings: dict[str, Any]) -> dict[str, Any] | None:
        """The stored value, or ``None`` (a miss)."""
        if not self.enabled:
            self.misses += 1
            return None
        path = self._path(kind, self.key(kind, model, prompt, settings))
        try:
            with path.open(encoding="utf-8") as fh:
                value = json.load(fh)["value"]
        except (OSError, ValueError, KeyError):
            self.misses += 1
            return None
        self.hits += 1
        return value

    def put(self, kind: str, model: str, prompt: str, settings: dict[str, Any], value: dict[str, Any]) -> None:
        """Store ``value`` (JSON-serialisable) atomically."""
        if not self.enabled:
            return
        path = self._path(kind, self.key(kind, model, prompt, settings))
        path.parent.mkdir(parents=True, exist_ok=True)
        entry = {"kind": kind, "model": model, "settings": settings, "prompt_chars": len(prompt), "value": value}
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(entry, fh, ensure_ascii=False)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def get_or_compute(self, kind: str, model: str, prompt: str, settings: dict[str, Any],
                       compute: Any) -> tuple[dict[str, Any], bool]:
        """``(value, cached)``: the stored value, or ``compute()`` stored and returned."""
        value = self.get(kind, model, prompt, settings)
        if value is not None:
            return value, True
        value = compute()
        self.put(kind, model, prompt, settings, value)
        return value, False


__all__ = ["DEFAULT_CACHE_DIR", "GenerationCache"]
