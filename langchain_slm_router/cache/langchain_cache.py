"""The cache as LangChain's ``BaseCache``: ``set_llm_cache(SLMRouterCache(...))`` caches any chat model or LLM.

LangChain calls ``lookup(prompt, llm_string)`` before a model call and ``update(...)`` after a miss. ``prompt`` is
the serialised message list (``langchain_core.load.dumps``) for chat models, plain text for LLMs; ``llm_string``
describes the model and its parameters. The adapter keys on them the same way the router keys its own answers: the
last human message is the question (embedded when ``semantic``), the earlier messages are the context, and
``llm_string`` is the configuration digest, so two models, or one model with two temperatures, never share
answers. The generations are kept as LangChain JSON (``dumps``/``loads``; no pickle).
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from typing import Any

from langchain_core.caches import RETURN_VAL_TYPE, BaseCache
from langchain_core.load import dumps, loads

from langchain_slm_router.cache.key import digest
from langchain_slm_router.cache.semantic import CacheProbe, SemanticCache


def prompt_messages(prompt: str) -> list[dict[str, str]]:
    """The role/content dicts of a LangChain cache prompt (serialised chat messages, or plain text)."""
    try:
        data = json.loads(prompt)
    except ValueError:
        data = None
    if isinstance(data, list) and data and all(isinstance(m, dict) and m.get("lc") for m in data):
        from langchain_slm_router.messages import Conversation

        try:
            return Conversation(loads(prompt, allowed_objects="messages")).dicts
        except Exception:  # noqa: BLE001 - not messages after all: key the text itself
            pass
    return [{"role": "user", "content": prompt}]


class SLMRouterCache(BaseCache):
    """LangChain ``BaseCache`` over a :class:`SemanticCache` (exact by default; ``semantic=True`` for paraphrases).

    Example:
        .. code-block:: python

            from langchain_core.globals import set_llm_cache
            from langchain_slm_router.cache import SemanticCache, SLMRouterCache

            set_llm_cache(SLMRouterCache(SemanticCache(semantic=True)))
    """

    def __init__(self, cache: SemanticCache | None = None, **options: Any) -> None:
        self.cache = cache if cache is not None else SemanticCache(**options)
        self._pending: OrderedDict[tuple[str, str], CacheProbe] = OrderedDict()
        self._lock = threading.Lock()

    def lookup(self, prompt: str, llm_string: str) -> RETURN_VAL_TYPE | None:
        probe = self.cache.lookup([prompt_messages(prompt)], digest("langchain", llm_string))[0]
        if probe.hit and probe.entry is not None and probe.entry.payload:
            try:
                return loads(probe.entry.payload, allowed_objects="core")
            except Exception:  # noqa: BLE001 - an unreadable payload is a miss
                return None
        with self._lock:  # keep the probe so that update() can verify against its neighbour
            self._pending[(prompt, llm_string)] = probe
            while len(self._pending) > 1024:
                self._pending.popitem(last=False)
        return None

    def update(self, prompt: str, llm_string: str, return_val: RETURN_VAL_TYPE) -> None:
        with self._lock:
            probe = self._pending.pop((prompt, llm_string), None)
        if probe is None:
            probe = self.cache.lookup([prompt_messages(prompt)], digest("langchain", llm_string))[0]
            if probe.hit:
                return
        text = "".join(getattr(g, "text", "") for g in return_val[:1])
        self.cache.record(probe, text, "model", payload=dumps(list(return_val)))

    def clear(self, **kwargs: Any) -> None:
        self.cache.invalidate()


__all__ = ["SLMRouterCache", "prompt_messages"]
