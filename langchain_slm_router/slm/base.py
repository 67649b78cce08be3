"""The stage-2 protocol: what the router needs from a small language model.

A backend answers a batch of conversations and returns, for each, an :class:`SLMGeneration`: the text, the
probability of every token it chose (and, where the engine gives them, the top-k alternatives), the entropy of each
next-token distribution, whether the model finished by itself, token counts and latency. The router reads nothing
else, so any engine that reports token probabilities can be the SLM: :class:`~langchain_slm_router.slm.LocalSLM`
(transformers, in process, the default) or a chat model served elsewhere.

The one rule a backend owns besides generation is **overflow**: a prompt longer than ``max_input_tokens`` is
``"escalate"``-d (the backend returns a :class:`~langchain_slm_router.errors.QueryTooLongError` in that query's slot
and the router sends the query to the fallback), ``"truncate"``-d (the middle is cut) or an ``"error"`` (the
router raises that error to the caller).

Backends are registered by name in :data:`SLM_BACKENDS` (RouteLLM's pattern: one abstract method, a registry).
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from langchain_slm_router.errors import QueryTooLongError
from langchain_slm_router.signals import ConfidenceSignals

ChatMessageDict = Mapping[str, str]
"""One chat message as the SLM sees it: ``{"role": ..., "content": ...}``."""

Overflow = Literal["escalate", "truncate", "error"]

EarlyExit = Callable[[Sequence[float], int], bool]
"""``stop(token_probs_so_far, tokens_left) -> True`` when the answer can no longer be kept whatever comes next.

A backend that supports early exit calls it after each generated token and stops that answer when it returns
True (the generation is then marked ``early_exit``). Backends that cannot stop mid-answer may ignore it.
"""


_CANCEL: contextvars.ContextVar[Callable[[], bool] | None] = contextvars.ContextVar("slm_cancel", default=None)


def cancelled() -> bool:
    """True when the async caller of this (worker-thread) generation has gone (cancelled, timed out).

    A backend checks it between tokens and stops: the thread and the model's lock are then returned at once
    instead of after a whole answer nobody reads.
    """
    gone = _CANCEL.get()
    return gone is not None and gone()


async def run_cancellable(call: Callable[[], Any], gone: Callable[[], bool] | None = None) -> Any:
    """``call()`` in a worker thread, where :func:`cancelled` turns True once the awaiting task is cancelled (or
    ``gone()`` is True: e.g. every caller of a shared batch left), so that the backend stops early."""
    event = threading.Event()
    context = contextvars.copy_context()
    context.run(_CANCEL.set, (lambda: event.is_set() or gone()) if gone is not None else event.is_set)
    future = asyncio.get_running_loop().run_in_executor(None, context.run, call)
    try:
        return await future
    except asyncio.CancelledError:
        event.set()
        raise


class SLMGeneration(BaseModel):
    """One answer of the small model, with the evidence of how sure it was."""

    model_config = ConfigDict(frozen=True)

    text: str
    token_ids: list[int] = Field(default_factory=list)
    token_probs: list[float]
    token_entropies: list[float]
    top_logprobs: list[dict[str, float]] | None = None
    """Per answer token, the engine's top-k alternatives as ``{token: logprob}``, when the engine reports them."""
    signals: ConfidenceSignals
    input_tokens: int
    output_tokens: int
    truncated_input: bool = False
    finished: bool = Field(description="True when the model ended the answer itself (not cut by max_new_tokens)")
    latency_ms: float
    early_exit: bool = False
    """True when generation was stopped early because the gate could no longer keep the answer."""
    hidden: dict[str, list[float]] | None = None
    """Hidden-state vectors of the generating pass, by name (``answer_mean@L15``, see :mod:`.hidden`), when the
    backend captures them (``LocalSLM(hidden_layers=...)``); ``None`` for backends that cannot."""
    samples: list[str] | None = None
    """Answers sampled for the same prompt (``LocalSLM(samples=K)``, at ``sample_temperature``), for the
    sampled-agreement signals (:func:`~langchain_slm_router.gates.features.agreement_features`); ``None`` when
    none were asked for."""


class SLMBackend(BaseModel, ABC):
    """A small model that answers chat messages with token-level confidence (the stage-2 protocol).

    Subclasses implement :meth:`generate_batch` and :meth:`count_tokens`; everything else has a default.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    max_new_tokens: int = Field(default=64, ge=1, le=4096)
    """Bound on the answer's length in tokens."""
    max_input_tokens: int = Field(default=1536, ge=16)
    """Bound on the prompt's length in tokens (memory and time stay bounded)."""
    overflow: Overflow = "escalate"
    """What a longer prompt gets: ``"escalate"`` to the fallback, ``"truncate"`` (cut the middle), or ``"error"``."""
    system_prompt: str | None = "You are a helpful assistant. Answer the question briefly and accurately."
    """System message added when the conversation has none (``None`` adds none)."""

    backend_name: ClassVar[str] = ""

    @property
    @abstractmethod
    def model_name(self) -> str:
        """A display name for traces."""

    @abstractmethod
    def generate_batch(
        self, conversations: Sequence[Sequence[ChatMessageDict]], *, early_exit: EarlyExit | None = None
    ) -> list[SLMGeneration | Exception]:
        """Answer each conversation; a query that fails alone (e.g. over the input bound) gets its exception."""

    async def agenerate_batch(
        self, conversations: Sequence[Sequence[ChatMessageDict]], *, early_exit: EarlyExit | None = None
    ) -> list[SLMGeneration | Exception]:
        """Async :meth:`generate_batch` (default: in a worker thread, which stops between tokens when the caller is
        cancelled, for backends that check :func:`cancelled`)."""
        return await run_cancellable(functools.partial(self.generate_batch, conversations, early_exit=early_exit))

    @abstractmethod
    def count_tokens(self, messages: Sequence[ChatMessageDict]) -> int:
        """Number of prompt tokens the messages render to (before any truncation)."""

    def generate(self, messages: Sequence[ChatMessageDict]) -> SLMGeneration:
        """Answer one conversation; raises its error."""
        out = self.generate_batch([messages])[0]
        if isinstance(out, Exception):
            raise out
        return out

    def load(self) -> Any:
        """Load weights or open connections ahead of the first query (default: nothing to do)."""
        return None

    def fit_prompt(self, ids: list[int], limit: int, *, estimated: bool = False) -> tuple[list[int], bool]:
        """The overflow rule on a prompt's token ids: ``ids`` within ``limit`` as they are; longer, cut in the
        middle (``"truncate"``: the start with the system prompt and the end with the question are kept), else a
        :class:`~langchain_slm_router.errors.QueryTooLongError`. Returns the ids and whether they were cut."""
        if len(ids) <= limit:
            return ids, False
        self.check_overflow(len(ids), limit, estimated=estimated)
        return cut_middle(ids, limit), True

    def check_overflow(self, n_tokens: int, limit: int, *, estimated: bool = False) -> None:
        """Raise the :class:`~langchain_slm_router.errors.QueryTooLongError` of a prompt of ``n_tokens`` over
        ``limit``, unless ``overflow="truncate"``."""
        if n_tokens > limit and self.overflow != "truncate":
            raise QueryTooLongError(
                f"The prompt is {n_tokens} tokens{' (estimated)' if estimated else ''}; the SLM accepts at most "
                f"{limit} (max_input_tokens={self.max_input_tokens}). Set overflow='truncate' to cut it, or raise "
                "max_input_tokens."
            )

    def weights_sha256(self) -> str | None:
        """A sha256 naming the exact weights this backend answers with (a learned gate file is tied to it), or
        ``None`` when the backend cannot know them (a model served elsewhere)."""
        return None

    def with_system(self, messages: Sequence[ChatMessageDict]) -> list[dict[str, str]]:
        """The messages as plain dicts, with :attr:`system_prompt` first when they have no system message."""
        msgs = [{"role": str(m["role"]), "content": str(m["content"])} for m in messages]
        if self.system_prompt and not any(m["role"] == "system" for m in msgs):
            msgs.insert(0, {"role": "system", "content": self.system_prompt})
        return msgs


def cut_middle(seq: Any, keep: int, marker: Any = None) -> Any:
    """``seq`` (token ids or text) cut to ``keep`` items by dropping its middle: a quarter from the start, the
    rest from the end (the question is at the end); ``marker`` (e.g. ``" … "``) marks the cut."""
    head = keep // 4
    tail = seq[len(seq) - (keep - head):] if keep > head else seq[:0]
    return seq[:head] + (marker if marker is not None else seq[:0]) + tail


def plain_prompt(messages: Sequence[ChatMessageDict], add_generation_prompt: bool = True) -> str:
    """The prompt of a model without a chat template: ``role: content`` lines, then ``assistant: ``."""
    text = "".join(f"{m['role']}: {m['content']}\n" for m in messages)
    return text + "assistant: " if add_generation_prompt else text


SLM_BACKENDS: dict[str, type[SLMBackend]] = {}
"""Registered backends by name (``"local"``, ...); :func:`register_backend` adds one."""


def register_backend(cls: type[SLMBackend]) -> type[SLMBackend]:
    """Class decorator: register ``cls`` under its ``backend_name``."""
    if not cls.backend_name:
        raise ValueError(f"{cls.__name__} needs a backend_name to be registered")
    SLM_BACKENDS[cls.backend_name] = cls
    return cls


def make_backend(name: str, **kwargs: Any) -> SLMBackend:
    """Build the backend registered as ``name`` with ``kwargs``."""
    try:
        cls = SLM_BACKENDS[name]
    except KeyError:
        raise ValueError(f"unknown SLM backend {name!r}; expected one of {sorted(SLM_BACKENDS)}") from None
    return cls(**kwargs)


__all__ = [
    "SLM_BACKENDS",
    "ChatMessageDict",
    "EarlyExit",
    "Overflow",
    "SLMBackend",
    "SLMGeneration",
    "cancelled",
    "cut_middle",
    "make_backend",
    "plain_prompt",
    "register_backend",
    "run_cancellable",
]
