"""Typed errors of the HTTP server, each with the HTTP status it is answered with.

The router's own errors (:mod:`langchain_slm_router.errors`) are mapped to statuses by :func:`http_status`: bad
input 400, over a size bound 413, past a time bound 504, the fallback unreachable or failing 502, the model not
loadable 503. The server adds the errors below for what only a server can refuse.
"""

from __future__ import annotations

from langchain_slm_router.errors import (
    FallbackError,
    InvalidQueryError,
    MathTimeoutError,
    ModelLoadError,
    QueryTooLongError,
    SLMRouterError,
)


class ServerError(SLMRouterError):
    """Base class of the errors the HTTP server answers with; ``status`` is the HTTP status."""

    status: int = 500


class BadRequestError(ServerError, ValueError):
    """The request body is not a valid request of the protocol (HTTP 400)."""

    status = 400


class AuthenticationError(ServerError, PermissionError):
    """The request has no API key or a wrong one (HTTP 401). The message never contains a key."""

    status = 401


class ModelNotFoundError(ServerError, LookupError):
    """The request names a model (configuration) the server does not serve (HTTP 404)."""

    status = 404


class RequestTooLargeError(ServerError, ValueError):
    """The request body is larger than ``ServerSettings.max_body_bytes`` (HTTP 413)."""

    status = 413


class ServerBusyError(ServerError):
    """Every routing slot is busy and the queue is full (HTTP 429, with ``Retry-After``)."""

    status = 429


class ServiceUnavailableError(ServerError):
    """The server is shutting down, not ready yet, or a request waited too long in the queue (HTTP 503)."""

    status = 503


class RequestTimeoutError(ServerError, TimeoutError):
    """Routing took longer than ``ServerSettings.request_timeout_s`` (HTTP 504)."""

    status = 504


def http_status(exc: BaseException) -> int:
    """The HTTP status a failed request is answered with."""
    if isinstance(exc, ServerError):
        return exc.status
    if isinstance(exc, QueryTooLongError):
        return 413
    if isinstance(exc, InvalidQueryError):
        return 400
    if isinstance(exc, (MathTimeoutError, TimeoutError)):
        return 504
    if isinstance(exc, FallbackError):
        return 502
    if isinstance(exc, ModelLoadError):
        return 503
    return 500


def public_message(exc: BaseException) -> str:
    """The message sent to the client: the typed error's own message; nothing internal for other exceptions."""
    if isinstance(exc, SLMRouterError):
        return str(exc)
    return f"internal error ({type(exc).__name__}); see the server log"


__all__ = [
    "AuthenticationError",
    "BadRequestError",
    "ModelNotFoundError",
    "RequestTimeoutError",
    "RequestTooLargeError",
    "ServerBusyError",
    "ServerError",
    "ServiceUnavailableError",
    "http_status",
    "public_message",
]
