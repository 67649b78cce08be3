"""Lazy package exports: a package names its public objects and the modules that define them, and a name is
imported on first access (so ``import langchain_slm_router`` does not load torch, transformers or llama-index).

Both packages (``langchain_slm_router`` and ``llama_index_integration``) use it::

    __getattr__, __dir__ = lazy_exports(__name__, {"SLMRouter": "router", ...}, globals())
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(
    package: str, names: Mapping[str, str], namespace: dict[str, Any]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The module-level ``__getattr__`` and ``__dir__`` of ``package`` for ``names`` (public name -> submodule)."""

    def __getattr__(name: str) -> Any:
        module = names.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{module}"), name)
        namespace[name] = value  # later accesses skip __getattr__
        return value

    def __dir__() -> list[str]:
        return sorted([*namespace, *names])

    return __getattr__, __dir__


__all__ = ["lazy_exports"]
