"""Coalescing concurrent requests' SLM calls into batches.

Every HTTP request is routed by its own ``SLMRouter.aroute`` / ``astream`` call, so math answers return at once
and escalated requests call the fallback on their own. Only the SLM stage is shared: the router's SLM is wrapped
in a :class:`CoalescedSLM`, whose ``agenerate_batch`` hands the conversations to an :class:`SLMBatcher`. The
batcher runs one ``generate_batch`` call of the real backend at a time per configuration; the conversations that
arrive while it runs are answered together by the next call (continuous batching; no added wait when the SLM is
idle, unless ``window_s`` asks for one).

Only requests with the same SLM configuration and the same gate are merged (``batch_key``): the batch runs with
one backend and one early-exit rule. Greedy answers are the same text batched or alone (the local backend pads on
the left); the token probabilities can differ in the last digits, see docs/server.md for what that means for the
gate.
"""

from __future__ import annotations

import asyncio
import functools
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from pydantic import ConfigDict, Field, SerializeAsAny

from langchain_slm_router.slm import EarlyExit, SLMBackend, SLMGeneration
from langchain_slm_router.slm.base import ChatMessageDict, run_cancellable


@dataclass
class _Pending:
    convs: list[Sequence[ChatMessageDict]]
    future: asyncio.Future[list[Any]]
    backend: SLMBackend
    early_exit: EarlyExit | None


class SLMBatcher:
    """Runs the SLM calls of concurrent requests together, one batch at a time per configuration.

    Args:
        max_batch: most conversations in one ``generate_batch`` call.
        window_s: how long an idle SLM waits for more requests before starting (0: start at once).
        on_batch: called after each batch with ``(conversations, generations, seconds)`` (metrics).
    """

    def __init__(self, max_batch: int = 32, window_s: float = 0.0,
                 on_batch: Callable[[int, list[Any], float], None] | None = None) -> None:
        self.max_batch = max_batch
        self.window_s = window_s
        self.on_batch = on_batch
        self.batches = 0
        """Number of ``generate_batch`` calls made."""
        self.conversations = 0
        """Number of conversations answered."""
        self._pending: dict[str, deque[_Pending]] = {}
        self._workers: dict[str, asyncio.Task[None]] = {}

    async def submit(self, key: str, backend: SLMBackend, convs: Sequence[Sequence[ChatMessageDict]],
                     early_exit: EarlyExit | None) -> list[SLMGeneration | Exception]:
        """Answer ``convs`` with ``backend``, batched with the other requests of the same ``key``."""
        future: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        self._pending.setdefault(key, deque()).append(_Pending(list(convs), future, backend, early_exit))
        if key not in self._workers:
            self._workers[key] = asyncio.create_task(self._drain(key), name=f"slm-batcher:{key[:32]}")
        return await future

    async def _drain(self, key: str) -> None:
        queue = self._pending[key]
        try:
            while queue:
                if self.window_s > 0 and self._size(queue) < self.max_batch:
                    await asyncio.sleep(self.window_s)
                else:
                    await asyncio.sleep(0)  # let requests that arrived together join
                items = self._take(queue)
                if items:
                    await self._run(items)
        finally:
            del self._workers[key]
            self._pending.pop(key, None)
            for item in queue:  # only after a cancellation: fail what is left rather than leave it waiting
                if not item.future.done():
                    item.future.set_exception(RuntimeError("the SLM batcher stopped"))

    @staticmethod
    def _size(queue: deque[_Pending]) -> int:
        return sum(len(p.convs) for p in queue)

    def _take(self, queue: deque[_Pending]) -> list[_Pending]:
        items: list[_Pending] = []
        size = 0
        while queue and (not items or size + len(queue[0].convs) <= self.max_batch):
            item = queue.popleft()
            if item.future.done():  # its request was cancelled (timeout, client gone) before it ran
                continue
            items.append(item)
            size += len(item.convs)
        return items

    async def _run(self, items: list[_Pending]) -> None:
        convs = [c for item in items for c in item.convs]
        loop = asyncio.get_running_loop()
        start = loop.time()
        try:
            call = functools.partial(items[0].backend.generate_batch, convs, early_exit=items[0].early_exit)
            # the batch stops between tokens once every request in it has gone (timeout, client left)
            gens = await run_cancellable(call, gone=lambda: all(item.future.done() for item in items))
        except Exception as exc:  # noqa: BLE001 - every request of the batch gets the error
            for item in items:
                if not item.future.done():
                    item.future.set_exception(exc)
            return
        elapsed = loop.time() - start
        self.batches += 1
        self.conversations += len(convs)
        if self.on_batch is not None:
            self.on_batch(len(convs), gens, elapsed)
        at = 0
        for item in items:
            part, at = gens[at: at + len(item.convs)], at + len(item.convs)
            if not item.future.done():
                item.future.set_result(part)


class CoalescedSLM(SLMBackend):
    """An SLM backend whose async calls go through an :class:`SLMBatcher`; everything else is ``inner``'s.

    Its ``max_new_tokens``, ``max_input_tokens``, ``overflow`` and ``system_prompt`` mirror ``inner`` (the
    router reads ``overflow``); build it with :meth:`wrap`.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    backend_name: ClassVar[str] = "coalesced"

    inner: SerializeAsAny[SLMBackend]
    """The real backend that generates."""
    batcher: Any = Field(exclude=True)
    """The shared :class:`SLMBatcher`."""
    batch_key: str
    """Requests with equal keys are batched together (same backend configuration)."""
    gate_key: str = ""
    """Identifies the gate: requests whose gate has an early-exit rule are batched only with the same gate."""

    @classmethod
    def wrap(cls, inner: SLMBackend, batcher: SLMBatcher, gate_key: str = "") -> CoalescedSLM:
        """Wrap ``inner``; ``gate_key`` identifies the gate, whose early-exit rule the whole batch shares."""
        key = f"{type(inner).__module__}.{type(inner).__name__}:{inner.model_dump_json()}"
        return cls(inner=inner, batcher=batcher, batch_key=key, gate_key=gate_key, max_new_tokens=inner.max_new_tokens,
                   max_input_tokens=inner.max_input_tokens, overflow=inner.overflow,
                   system_prompt=inner.system_prompt)

    @property
    def model_name(self) -> str:
        return self.inner.model_name

    def load(self) -> Any:
        return self.inner.load()

    def weights_sha256(self) -> str | None:
        """The inner backend's weights: the same model answers, so the same gate file fits."""
        return self.inner.weights_sha256()

    def count_tokens(self, messages: Sequence[ChatMessageDict]) -> int:
        return self.inner.count_tokens(messages)

    def generate_batch(self, conversations: Sequence[Sequence[ChatMessageDict]], *,
                       early_exit: EarlyExit | None = None) -> list[SLMGeneration | Exception]:
        return self.inner.generate_batch(conversations, early_exit=early_exit)

    async def agenerate_batch(self, conversations: Sequence[Sequence[ChatMessageDict]], *,
                              early_exit: EarlyExit | None = None) -> list[SLMGeneration | Exception]:
        key = self.batch_key if early_exit is None else f"{self.batch_key}|{self.gate_key}"
        return await self.batcher.submit(key, self.inner, conversations, early_exit)


__all__ = ["CoalescedSLM", "SLMBatcher"]
