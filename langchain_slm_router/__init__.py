"""langchain-slm-router: answer each query with the cheapest component that can answer it well.

A three-stage, confidence-gated pipeline: a sympy math engine, a local small model whose own token probabilities
decide whether its answer is kept, and a large-model fallback (any LangChain chat model; default
``ChatOllama(model="mistral")``).

Importing the package is cheap: torch and transformers load when a model is first needed. Public names are
resolved lazily on first access.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from langchain_slm_router.errors import (
    CacheUnavailableError,
    DataUnavailableError,
    EmptyQueryError,
    FallbackError,
    FallbackTimeoutError,
    FallbackUnavailableError,
    GateFileError,
    GateInputError,
    GateSLMMismatchError,
    GenerationError,
    InvalidPriceError,
    InvalidQueryError,
    LogprobsUnavailableError,
    MathEngineError,
    MathTimeoutError,
    ModelLoadError,
    QueryTooLongError,
    SLMRouterError,
    SLMTimeoutError,
    SLMUnavailableError,
)
from langchain_slm_router.lazy import lazy_exports

if TYPE_CHECKING:  # pragma: no cover
    from langchain_slm_router.cache import RedisStore, SemanticCache, SLMRouterCache
    from langchain_slm_router.chat_model import ChatSLMRouter
    from langchain_slm_router.embeddings import MiniLMEmbeddings
    from langchain_slm_router.tools import make_math_tool, make_router_tool, math_tool
    from langchain_slm_router.fallback import default_fallback
    from langchain_slm_router.gates import Gate, GateDecision, GatePolicy, LearnedGate
    from langchain_slm_router.math_engine import MathAnswer, MathEngine
    from langchain_slm_router.router import SLMRouter, StreamPart
    from langchain_slm_router.savings import PriceTable, RouterStats, SavingsLedger
    from langchain_slm_router.signals import ConfidenceSignals
    from langchain_slm_router.slm import ChatModelSLM, LlamaCppSLM, LocalSLM, SLMBackend, SLMGeneration
    from langchain_slm_router.trace import RouteResult

_LAZY = {
    "SemanticCache": "cache",
    "RedisStore": "cache",
    "SLMRouterCache": "cache",
    "ChatSLMRouter": "chat_model",
    "default_fallback": "fallback",
    "MiniLMEmbeddings": "embeddings",
    "make_math_tool": "tools",
    "make_router_tool": "tools",
    "math_tool": "tools",
    "Gate": "gates",
    "GateDecision": "gates",
    "GatePolicy": "gates",
    "LearnedGate": "gates",
    "MathAnswer": "math_engine",
    "MathEngine": "math_engine",
    "SLMRouter": "router",
    "StreamPart": "router",
    "ConfidenceSignals": "signals",
    "ChatModelSLM": "slm",
    "LlamaCppSLM": "slm",
    "LocalSLM": "slm",
    "SLMBackend": "slm",
    "SLMGeneration": "slm",
    "RouteResult": "trace",
    "PriceTable": "savings",
    "RouterStats": "savings",
    "SavingsLedger": "savings",
}

__version__ = "0.1.0"
"""The package's version: the one place (pyproject.toml reads it; the server reports it)."""

__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())


__all__ = [
    *_LAZY,
    "CacheUnavailableError",
    "DataUnavailableError",
    "EmptyQueryError",
    "FallbackError",
    "FallbackTimeoutError",
    "FallbackUnavailableError",
    "GateFileError",
    "GateInputError",
    "GateSLMMismatchError",
    "GenerationError",
    "InvalidPriceError",
    "InvalidQueryError",
    "LogprobsUnavailableError",
    "MathEngineError",
    "MathTimeoutError",
    "ModelLoadError",
    "QueryTooLongError",
    "SLMRouterError",
    "SLMTimeoutError",
    "SLMUnavailableError",
]
