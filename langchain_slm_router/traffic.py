"""The traffic log: escalated queries' (SLM draft, LLM answer) pairs, appended to a JSONL file at run time.

``SLMRouter(traffic_log="pairs.jsonl")`` appends one line per query that the gate escalated and the fallback
answered; ``slm-router train-gate --traffic pairs.jsonl`` (:mod:`langchain_slm_router.gates.training`) fits a gate
on them. Appends are serialised by one lock per file (resolved path), so routers and their ``with_options``
copies that share a file never interleave their lines. The async router writes from a worker thread.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from langchain_slm_router.slm.base import ChatMessageDict, SLMGeneration

_LOCKS: dict[Path, threading.Lock] = {}
_LOCKS_GUARD = threading.Lock()


def _lock_for(path: Path) -> threading.Lock:
    """The process-wide lock of the file at ``path`` (one per resolved path)."""
    key = path.expanduser().resolve()
    with _LOCKS_GUARD:
        return _LOCKS.setdefault(key, threading.Lock())


class TrafficLog:
    """Appends escalated (SLM draft, LLM answer) pairs to a JSONL file; safe to share between threads and
    between instances on the same file."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = _lock_for(self.path)

    def append(self, messages: Sequence[ChatMessageDict], generation: SLMGeneration, llm_text: str) -> None:
        """Append one pair (the conversation, the SLM's draft with its token evidence, the LLM's answer)."""
        line = json.dumps({
            "time": time.time(),
            "messages": [{"role": str(m["role"]), "content": str(m["content"])} for m in messages],
            "slm": {"text": generation.text, "token_probs": [round(p, 6) for p in generation.token_probs],
                    "token_entropies": [round(h, 5) for h in generation.token_entropies],
                    "finished": generation.finished, "early_exit": generation.early_exit,
                    **({"hidden": {k: [round(v, 5) for v in vec] for k, vec in generation.hidden.items()}}
                       if generation.hidden else {})},
            "llm": {"text": llm_text},
        }, ensure_ascii=False)
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as fh:
                fh.write(line + "\n")


__all__ = ["TrafficLog"]
