"""Typed errors raised by langchain-slm-router.

Every error the router raises on purpose derives from :class:`SLMRouterError`, so a caller can catch the
whole family with one ``except``; each subclass also derives from the built-in exception a Python user would
expect (``ValueError`` for bad input, ``ConnectionError`` for an unreachable fallback, ...).
"""

from __future__ import annotations


class SLMRouterError(Exception):
    """Base class of every error raised by langchain-slm-router."""


class InvalidQueryError(SLMRouterError, ValueError):
    """The query cannot be routed: empty, not text, undecodable, or over the configured size limit."""


class ConfigError(SLMRouterError, ValueError):
    """A configuration is invalid: a configuration file that cannot be read, or command-line options that do not
    fit together. The message says which file or option and what to change."""


class EmptyQueryError(InvalidQueryError):
    """The query is empty or only white space."""


class QueryTooLongError(InvalidQueryError):
    """The query is longer than the configured limit (characters or SLM input tokens)."""


class MathEngineError(SLMRouterError):
    """Base class of math-engine errors (the engine normally declines instead of raising)."""


class MathTimeoutError(MathEngineError, TimeoutError):
    """A symbolic computation ran past its time bound."""


class ModelLoadError(SLMRouterError, RuntimeError):
    """The local small model could not be loaded (missing file, corrupt weights, unsupported architecture)."""


class GateFileError(SLMRouterError, ValueError):
    """A gate file is missing, malformed or tampered with (gate files are JSON data, never code)."""


class GateSLMMismatchError(GateFileError):
    """A learned gate file was fitted for other SLM weights than the router's SLM (its P(correct) would be
    meaningless); the message names both."""


class GateInputError(SLMRouterError, ValueError):
    """The gate needs a signal the SLM's answer lacks (e.g. hidden states from a backend that gives none)."""


class GenerationError(SLMRouterError, RuntimeError):
    """The small model failed while generating (in process, or its engine answered an error or a malformed reply)."""


class SLMUnavailableError(GenerationError, ConnectionError):
    """The small model's engine (Ollama, vLLM, llama.cpp server) cannot be reached, or dropped the connection
    in the middle of an answer."""


class SLMTimeoutError(GenerationError, TimeoutError):
    """The small model's engine did not answer within its client's timeout."""


class LogprobsUnavailableError(SLMRouterError, RuntimeError):
    """The small model's engine returns no token log-probabilities, so its answers cannot be gated.

    Raised when a :class:`~langchain_slm_router.slm.ChatModelSLM` is built on a chat model whose ``logprobs`` is
    off, or on the first answer that comes back without them (a server that ignores the option).
    """


class FallbackError(SLMRouterError, RuntimeError):
    """The large-model fallback failed (HTTP error, malformed response, ...)."""


class FallbackUnavailableError(FallbackError, ConnectionError):
    """The large-model fallback cannot be reached (server down, connection refused, DNS failure)."""


class FallbackTimeoutError(FallbackError, TimeoutError):
    """The large-model fallback did not answer within its timeout."""


class DataUnavailableError(SLMRouterError, FileNotFoundError):
    """An evaluation data set is in neither the data folder nor reachable on the Hugging Face hub."""


class InvalidPriceError(SLMRouterError, ValueError):
    """A price table entry is negative, infinite or not a number (see :mod:`langchain_slm_router.savings`)."""


class CacheUnavailableError(SLMRouterError, ConnectionError):
    """The answer cache's store (Redis) cannot be reached. The router never raises it: a store that is down makes
    every lookup a miss; only direct calls on a store see it."""


class WeightsFetchError(ModelLoadError):
    """Model weights could not be fetched: a download failed, or the assembled file's SHA-256 differs from the pin."""
