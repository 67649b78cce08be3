"""Stage 2 on an engine: any LangChain chat model that returns token log-probabilities is the SLM.

Teams already run their small model on an engine — Ollama on a GPU box, vLLM or a llama.cpp server behind the
OpenAI protocol — and those engines batch many users on one accelerator. :class:`ChatModelSLM` turns such a chat
model into an :class:`~langchain_slm_router.slm.base.SLMBackend`::

    from langchain_ollama import ChatOllama
    from langchain_openai import ChatOpenAI
    from langchain_slm_router import ChatModelSLM, SLMRouter

    slm = ChatModelSLM(chat_model=ChatOllama(model="qwen2.5:1.5b", logprobs=True, top_logprobs=5))
    slm = ChatModelSLM(chat_model=ChatOpenAI(base_url="http://vllm:8000/v1", api_key="-",
                                             model="Qwen/Qwen2.5-1.5B-Instruct", logprobs=True, top_logprobs=5))
    router = SLMRouter(slm=slm)

How the signals are computed
    Each answer token's probability is ``exp(logprob)`` as the engine reports it. The entropy of each next-token
    distribution is computed over the ``top_logprobs`` alternatives the engine returns: ``-sum p log p`` over the
    top k. Every left-out term is positive, so this is a **lower bound** of the true entropy; ``docs/scaling.md``
    gives how far below the exact value it was on the local model for k = 5 and k = 20. Without ``top_logprobs``
    only the chosen token's term is known (a looser lower bound); ask for ``top_logprobs=5`` or more.

Concurrency
    :meth:`ChatModelSLM.agenerate_batch` sends the batch's requests in parallel, at most ``max_concurrency`` at a
    time (an ``asyncio.Semaphore``); :meth:`ChatModelSLM.generate_batch` does the same with the chat model's
    thread-pooled ``batch``. The engine does the batching on its side.

Errors (all typed, from :mod:`langchain_slm_router.errors`)
    * a chat model whose ``logprobs`` is off: :class:`~langchain_slm_router.errors.LogprobsUnavailableError` when the
      backend is built; a server that ignores the option: the same error, raised by the first batch (never a
      silent gate on zero confidence);
    * server down, connection refused, or the connection dropped in the middle of an answer:
      :class:`~langchain_slm_router.errors.SLMUnavailableError`; a client timeout:
      :class:`~langchain_slm_router.errors.SLMTimeoutError`; an HTTP error or a malformed reply:
      :class:`~langchain_slm_router.errors.GenerationError`. These land in the failing query's slot of the batch;
      the router then sends that query to the fallback and says why in the trace (``generate`` raises them).
    * a prompt over ``max_input_tokens``: the ``overflow`` rule of the base class
      (:class:`~langchain_slm_router.errors.QueryTooLongError` in the slot for ``"escalate"`` and ``"error"``).

Token counts
    With a ``tokenizer`` (a Hugging Face tokenizer, whose chat template renders the prompt, or any callable
    ``text -> token ids``) prompts are counted exactly. Without one they are **estimated** as
    ``ceil(characters / chars_per_token) + 4`` per message (4 characters a token is the usual figure for English
    with BPE vocabularies; the 4 covers the chat template's role markers). The engine's own count, when it reports
    one, is what :attr:`SLMGeneration.input_tokens` holds.
"""

from __future__ import annotations

import asyncio
import importlib
import math
import time
import weakref
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, ClassVar

from pydantic import Field, PrivateAttr, field_validator

from langchain_slm_router.errors import (
    GenerationError,
    LogprobsUnavailableError,
    QueryTooLongError,
    SLMRouterError,
    SLMTimeoutError,
    SLMUnavailableError,
)
from langchain_slm_router.fallback import error_kind, fallback_name
from langchain_slm_router.signals import ConfidenceSignals
from langchain_slm_router.slm.base import (
    ChatMessageDict,
    EarlyExit,
    SLMBackend,
    SLMGeneration,
    cut_middle,
    plain_prompt,
    register_backend,
)
from langchain_slm_router.trace import elapsed_ms

CHAT_MODEL_PROVIDERS = {"ollama": ("langchain_ollama", "ChatOllama"), "openai": ("langchain_openai", "ChatOpenAI")}
"""Chat models a configuration file can name: ``{"provider": "ollama" | "openai", **the model's settings}``."""

MAX_TOKENS_FIELDS = ("num_predict", "max_tokens", "max_completion_tokens", "max_new_tokens", "max_output_tokens")
"""Names chat models give their answer-length bound (ChatOllama, ChatOpenAI, ...); the first one present is set."""


def parse_logprobs(metadata: Mapping[str, Any]) -> list[dict[str, Any]] | None:
    """The per-token log-probabilities in a chat model's ``response_metadata``, or ``None`` when there are none.

    Two layouts are read, both lists of ``{"token", "logprob", "top_logprobs": [{"token", "logprob"}, ...]}``:

    * Ollama (``ChatOllama``): ``response_metadata["logprobs"]`` is the list itself;
    * OpenAI protocol (``ChatOpenAI`` against OpenAI, vLLM, llama.cpp): ``response_metadata["logprobs"]["content"]``.
    """
    raw = metadata.get("logprobs")
    if isinstance(raw, Mapping):
        raw = raw.get("content")
    if not isinstance(raw, list):
        return None
    entries = [e.model_dump() if hasattr(e, "model_dump") else e for e in raw]  # the ollama client's Logprob objects
    return [e for e in entries if isinstance(e, Mapping) and "logprob" in e]  # type: ignore[misc]


def topk_entropy(top: Sequence[Mapping[str, Any]], chosen_logprob: float) -> float:
    """``-sum p log p`` over the reported alternatives (nats): a lower bound of the full distribution's entropy.

    With no alternatives only the chosen token's term is counted.
    """
    logps = [float(alt["logprob"]) for alt in top if "logprob" in alt] or [chosen_logprob]
    return max(0.0, -sum(math.exp(lp) * lp for lp in logps if lp > -1e4))


def generation_from_message(
    message: Any, *, latency_ms: float, input_tokens: int, max_new_tokens: int, truncated_input: bool = False,
    early_exit: bool = False,
) -> SLMGeneration:
    """Build an :class:`SLMGeneration` from a chat model's reply (an ``AIMessage``) that carries logprobs.

    Raises:
        LogprobsUnavailableError: the reply has no token log-probabilities.
    """
    metadata = getattr(message, "response_metadata", None) or {}
    entries = parse_logprobs(metadata)
    text = message.text if isinstance(getattr(message, "text", None), str) else str(message.content)
    if entries is None or (not entries and text.strip()):
        raise LogprobsUnavailableError(
            "The SLM's chat model answered without token log-probabilities, so its answers cannot be gated. "
            "Enable them on the model (ChatOllama(..., logprobs=True, top_logprobs=5), ChatOpenAI(..., "
            "logprobs=True, top_logprobs=5)) and use a server that returns them (a recent Ollama, vLLM, "
            "llama.cpp's server started with --logits_all true)."
        )
    probs = [math.exp(min(0.0, float(e["logprob"]))) for e in entries]
    ents = [topk_entropy(e.get("top_logprobs") or [], float(e["logprob"])) for e in entries]
    top = [{str(a["token"]): float(a["logprob"]) for a in (e.get("top_logprobs") or [])} for e in entries]
    usage = getattr(message, "usage_metadata", None) or {}
    reason = metadata.get("done_reason") or metadata.get("finish_reason")
    n = len(entries)
    finished = reason == "stop" if reason else n < max_new_tokens
    return SLMGeneration(
        text=text.strip(),
        token_probs=probs,
        token_entropies=ents,
        top_logprobs=top if any(top) else None,
        signals=ConfidenceSignals.from_tokens(probs, ents),
        input_tokens=int(usage.get("input_tokens") or input_tokens),
        output_tokens=int(usage.get("output_tokens") or n),
        truncated_input=truncated_input,
        finished=finished and not early_exit,
        latency_ms=latency_ms,
        early_exit=early_exit,
    )


def _unwrap(model: Any) -> tuple[Any, dict[str, Any]]:
    """The chat model under ``bind``/``with_config`` wrappers, and the keyword arguments bound on the way."""
    bound: dict[str, Any] = {}
    for _ in range(10):
        kwargs = getattr(model, "kwargs", None)
        if isinstance(kwargs, Mapping):
            bound = {**kwargs, **bound}
        if not hasattr(model, "bound"):
            break
        model = model.bound
    return model, bound


@register_backend
class ChatModelSLM(SLMBackend):
    """A LangChain chat model that returns token logprobs (Ollama, vLLM, llama.cpp server, OpenAI) as the SLM.

    Example::

        from langchain_ollama import ChatOllama
        slm = ChatModelSLM(chat_model=ChatOllama(model="qwen2.5:1.5b", logprobs=True, top_logprobs=5))
        slm.generate([{"role": "user", "content": "What is the capital of France?"}]).signals.mean_prob
    """

    backend_name: ClassVar[str] = "chat_model"

    chat_model: Any
    """The LangChain chat model (``BaseChatModel``, or a ``Runnable`` taking messages); it must return logprobs."""
    temperature: float | None = Field(default=0.0, ge=0.0)
    """Sampling temperature set on the chat model (0: greedy, reproducible); ``None`` keeps the model's own."""
    max_concurrency: int = Field(default=8, ge=1, le=1024)
    """Requests in flight at once from one batch (the engine batches them on its side)."""
    tokenizer: Any | None = None
    """For exact prompt token counts: a Hugging Face tokenizer (its chat template is applied) or a callable
    ``text -> token ids``; ``None`` estimates (see :attr:`chars_per_token`)."""
    chars_per_token: float = Field(default=4.0, gt=0.0)
    """Characters per token of the estimate used without a tokenizer."""
    name: str | None = None
    """Display name for traces (default: the chat model's class and model, e.g. ``ChatOllama(qwen2.5:1.5b)``)."""

    @field_validator("chat_model", mode="before")
    @classmethod
    def _chat_model_from_dict(cls, value: Any) -> Any:
        """A dict (a JSON configuration, e.g. ``slm-router serve --config``) builds the chat model it names:
        ``{"provider": "ollama", "model": "qwen2.5:1.5b", "base_url": "http://gpu-box:11434"}`` or
        ``{"provider": "openai", "model": ..., "base_url": "http://vllm:8000/v1", "api_key": "-"}``;
        ``logprobs=True`` and ``top_logprobs=5`` unless the dict says otherwise."""
        if not isinstance(value, Mapping):
            return value
        spec = dict(value)
        provider = spec.pop("provider", None)
        if provider not in CHAT_MODEL_PROVIDERS:
            raise ValueError(f"chat_model needs a 'provider', one of {sorted(CHAT_MODEL_PROVIDERS)}; got {provider!r}")
        module, name = CHAT_MODEL_PROVIDERS[provider]
        spec.setdefault("logprobs", True)
        spec.setdefault("top_logprobs", 5)
        return getattr(importlib.import_module(module), name)(**spec)

    _models: dict[tuple[int, float | None], Any] = PrivateAttr(default_factory=dict)
    _loop_model: tuple[Any, tuple[int, float | None], Any, list[Any]] | None = PrivateAttr(default=None)

    def model_post_init(self, context: Any) -> None:
        """Check that the chat model is asked for logprobs."""
        inner, bound = _unwrap(self.chat_model)
        if "logprobs" in bound:
            enabled = bound["logprobs"]
        elif hasattr(inner, "logprobs"):
            enabled = inner.logprobs
        else:
            enabled = True  # a model without the setting is checked on its first answer
        if enabled is not True:
            raise LogprobsUnavailableError(
                f"{fallback_name(self.chat_model)} is not asked for token log-probabilities (logprobs={enabled!r}); "
                "the router gates on them. Build it with logprobs=True and top_logprobs=5, e.g. "
                "ChatOllama(model=..., logprobs=True, top_logprobs=5) or ChatOpenAI(..., logprobs=True, "
                "top_logprobs=5)."
            )

    @property
    def _model(self) -> Any:
        """The chat model with this backend's answer bound and temperature set (built once per setting)."""
        key = (self.max_new_tokens, self.temperature)
        model = self._models.get(key)
        if model is None:
            model = self._models[key] = self._configured(self.chat_model)
        return model

    async def _async_model(self) -> Any:
        """The configured chat model for the running event loop.

        A chat model's async HTTP client keeps connections bound to the event loop that opened them, so a second
        ``asyncio.run`` (LlamaIndex's sync wrappers start one per call) would fail on them, and ChatOpenAI shares one
        cached async client per process: each event loop gets its own copy of the chat model with fresh clients,
        built from the same settings. The copy of the previous loop is closed (its HTTP clients) when replaced.
        """
        loop = asyncio.get_running_loop()
        key = (self.max_new_tokens, self.temperature)
        cached = self._loop_model
        if cached is not None and cached[0]() is loop and cached[1] == key:
            return cached[2]
        fresh, owned = _with_fresh_clients(self.chat_model)
        self._loop_model = (weakref.ref(loop), key, self._configured(fresh), owned)
        if cached is not None:
            await _close_clients(cached[3])
        return self._loop_model[2]

    def _configured(self, model: Any) -> Any:
        fields = getattr(type(model), "model_fields", None)
        if not fields or not hasattr(model, "model_copy"):
            return model  # a binding or plain Runnable: used as given
        update: dict[str, Any] = {}
        key = next((f for f in MAX_TOKENS_FIELDS if f in fields), None)
        if key is not None:
            update[key] = self.max_new_tokens
        if self.temperature is not None and "temperature" in fields:
            update["temperature"] = self.temperature
        if key == "max_tokens" and "extra_body" in fields and getattr(model, "openai_api_base", None):
            # ChatOpenAI sends the bound as max_completion_tokens, which llama.cpp's server ignores (it would answer
            # up to its context length); self-hosted OpenAI-protocol servers also get the classic max_tokens
            update["extra_body"] = {**(getattr(model, "extra_body", None) or {}), "max_tokens": self.max_new_tokens}
        return model.model_copy(update=update) if update else model

    # ------------------------------------------------------------------ protocol
    @property
    def model_name(self) -> str:
        """``name``, else the chat model's class and model (``ChatOllama(smollm2)``)."""
        return self.name or fallback_name(self.chat_model)

    def count_tokens(self, messages: Sequence[ChatMessageDict]) -> int:
        """Prompt tokens of the messages (system prompt included): exact with :attr:`tokenizer`, else estimated."""
        msgs = self.with_system(messages)
        tok = self.tokenizer
        if tok is None:
            return sum(math.ceil(len(m["content"]) / self.chars_per_token) + 4 for m in msgs)
        if getattr(tok, "chat_template", None):
            text = tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
        else:
            text = plain_prompt(msgs, add_generation_prompt=False)
        if callable(getattr(tok, "encode", None)):
            return len(tok.encode(text, add_special_tokens=False))
        return len(tok(text))

    def prepare(self, messages: Sequence[ChatMessageDict]) -> tuple[list[dict[str, str]], int, bool]:
        """The messages to send (system prompt added), their token count, and whether they were truncated.

        Raises:
            QueryTooLongError: over ``max_input_tokens`` and ``overflow`` is not ``"truncate"``.
        """
        msgs = self.with_system(messages)
        n = self.count_tokens(msgs)
        if n <= self.max_input_tokens:
            return msgs, n, False
        self.check_overflow(n, self.max_input_tokens, estimated=self.tokenizer is None)
        for _ in range(8):  # cut the middle of the longest message until the prompt fits
            longest = max(range(len(msgs)), key=lambda i: len(msgs[i]["content"]))
            content = msgs[longest]["content"]
            excess_chars = int((n - self.max_input_tokens) * len(content) / max(1, self.count_tokens([msgs[longest]])))
            keep = max(0, len(content) - excess_chars - 16)
            cut = cut_middle(content, keep, " … ")
            msgs[longest] = {**msgs[longest], "content": cut}
            n = self.count_tokens(msgs)
            if n <= self.max_input_tokens:
                break
        return msgs, n, True

    def generate_batch(
        self, conversations: Sequence[Sequence[ChatMessageDict]], *, early_exit: EarlyExit | None = None
    ) -> list[SLMGeneration | Exception]:
        """Answer each conversation, ``max_concurrency`` requests in flight (the chat model's ``batch``).

        A query that fails alone (over the input bound, server error) gets its typed error in its slot.

        Raises:
            LogprobsUnavailableError: an answer came back without logprobs (the server ignores the option).
        """
        prepared = self._prepare_all(conversations)
        todo = [p for p in prepared if not isinstance(p, Exception)]
        if early_exit is not None:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(max_workers=min(self.max_concurrency, max(1, len(todo)))) as pool:
                outs = list(pool.map(lambda p: self._stream_one(p, early_exit), todo))
        elif todo:
            started = time.perf_counter()
            replies = self._model.batch([p[0] for p in todo], config={"max_concurrency": self.max_concurrency},
                                        return_exceptions=True)
            elapsed = (time.perf_counter() - started) * 1000.0
            outs = [self._finish(p, r, elapsed) for p, r in zip(todo, replies)]
        else:
            outs = []
        return self._merge(prepared, outs)

    async def agenerate_batch(
        self, conversations: Sequence[Sequence[ChatMessageDict]], *, early_exit: EarlyExit | None = None
    ) -> list[SLMGeneration | Exception]:
        """Async :meth:`generate_batch`: the requests run concurrently, at most ``max_concurrency`` at a time."""
        prepared = self._prepare_all(conversations)
        gate = asyncio.Semaphore(self.max_concurrency)

        async def one(p: tuple[list[dict[str, str]], int, bool]) -> SLMGeneration | Exception:
            async with gate:
                if early_exit is not None:
                    return await self._astream_one(p, early_exit)
                started = time.perf_counter()
                try:
                    reply: Any = await (await self._async_model()).ainvoke(p[0])
                except Exception as exc:  # noqa: BLE001 - classified by _finish
                    reply = exc
                return self._finish(p, reply, (time.perf_counter() - started) * 1000.0)

        outs = await asyncio.gather(*(one(p) for p in prepared if not isinstance(p, Exception)))
        return self._merge(prepared, list(outs))

    # ------------------------------------------------------------------ helpers
    def _prepare_all(self, conversations: Sequence[Sequence[ChatMessageDict]]) -> list[Any]:
        prepared: list[Any] = []
        for conv in conversations:
            try:
                prepared.append(self.prepare(conv))
            except QueryTooLongError as exc:
                prepared.append(exc)
        return prepared

    @staticmethod
    def _merge(prepared: list[Any], outs: list[SLMGeneration | Exception]) -> list[SLMGeneration | Exception]:
        for out in outs:
            if isinstance(out, LogprobsUnavailableError):
                raise out  # a configuration error of the whole backend, not of one query
        it = iter(outs)
        return [p if isinstance(p, Exception) else next(it) for p in prepared]

    def _finish(self, prepared: tuple[list[dict[str, str]], int, bool], reply: Any, latency_ms: float,
                early_exit: bool = False) -> SLMGeneration | Exception:
        if isinstance(reply, BaseException):
            return self.translate_error(reply)
        try:
            return generation_from_message(reply, latency_ms=latency_ms, input_tokens=prepared[1],
                                           max_new_tokens=self.max_new_tokens, truncated_input=prepared[2],
                                           early_exit=early_exit)
        except LogprobsUnavailableError as exc:
            return exc

    def _stream_one(self, prepared: tuple[list[dict[str, str]], int, bool], stop: EarlyExit) -> Any:
        started = time.perf_counter()
        merged, cut = None, False
        stream: Iterator[Any] = iter(self._model.stream(prepared[0]))
        try:
            for chunk in stream:
                merged = chunk if merged is None else merged + chunk
                if self._should_stop(merged, stop):
                    cut = True
                    break
        except Exception as exc:  # noqa: BLE001 - classified by _finish
            return self._finish(prepared, exc, 0.0)
        finally:
            close = getattr(stream, "close", None)
            if close is not None:
                close()  # hang up: the engine stops generating this answer
        return self._finish(prepared, merged if merged is not None else _empty(), elapsed_ms(started), early_exit=cut)

    async def _astream_one(self, prepared: tuple[list[dict[str, str]], int, bool], stop: EarlyExit) -> Any:
        started = time.perf_counter()
        merged, cut = None, False
        stream = (await self._async_model()).astream(prepared[0])
        try:
            async for chunk in stream:
                merged = chunk if merged is None else merged + chunk
                if self._should_stop(merged, stop):
                    cut = True
                    break
        except Exception as exc:  # noqa: BLE001 - classified by _finish
            return self._finish(prepared, exc, 0.0)
        finally:
            await stream.aclose()
        return self._finish(prepared, merged if merged is not None else _empty(), elapsed_ms(started), early_exit=cut)

    def _should_stop(self, merged: Any, stop: EarlyExit) -> bool:
        entries = parse_logprobs(getattr(merged, "response_metadata", None) or {}) or []
        if not entries:
            return False
        probs = [math.exp(min(0.0, float(e["logprob"]))) for e in entries]
        return bool(stop(probs, max(0, self.max_new_tokens - len(probs))))

    def translate_error(self, exc: BaseException) -> Exception:
        """The typed error for an exception raised by the chat model's client."""
        if isinstance(exc, SLMRouterError):
            return exc
        if not isinstance(exc, Exception):
            raise exc
        kind = error_kind(exc)
        where = getattr(_unwrap(self.chat_model)[0], "base_url", None) or getattr(
            _unwrap(self.chat_model)[0], "openai_api_base", None)
        at = f" at {where}" if where else ""
        detail = f"{type(exc).__name__}: {exc}"
        err: Exception
        if kind == "unavailable":
            err = SLMUnavailableError(
                f"The SLM engine {self.model_name}{at} is unreachable or dropped the connection ({detail}). "
                "Check that the server runs and serves the model."
            )
        elif kind == "timeout":
            err = SLMTimeoutError(f"The SLM engine {self.model_name}{at} timed out ({detail}).")
        elif kind == "malformed":
            err = GenerationError(f"The SLM engine {self.model_name}{at} sent a malformed reply ({detail}).")
        else:
            err = GenerationError(f"The SLM engine {self.model_name}{at} failed: {detail}.")
        err.__cause__ = exc
        return err


CLIENT_FIELDS = ("client", "async_client", "root_client", "root_async_client")
"""Fields in which chat models (ChatOpenAI) keep their HTTP clients; a rebuilt copy makes its own."""


def _with_fresh_clients(model: Any) -> tuple[Any, list[Any]]:
    """A copy of ``model`` built again from its settings, so it opens its own HTTP clients, and the clients that
    copy owns (to close with :func:`_close_clients` when it is replaced). A model that cannot be rebuilt (a
    ``bind``-wrapped model, one whose fields do not build it again) is used as it is, with a warning when the
    rebuild failed: its async connections may be bound to another event loop."""
    fields = getattr(type(model), "model_fields", None)
    if not fields:
        return model, []
    settings = {name: getattr(model, name) for name in fields if name not in CLIENT_FIELDS}
    made: list[Any] = []
    if "http_async_client" in fields and settings.get("http_async_client") is None:
        import httpx  # ChatOpenAI would otherwise reuse its process-wide cached async client (bound to the old loop)

        # no idle pooled connections: none is left bound to a loop that has ended when this copy is replaced
        settings["http_async_client"] = httpx.AsyncClient(limits=httpx.Limits(max_keepalive_connections=0))
        made.append(settings["http_async_client"])
    try:
        fresh = type(model)(**settings)
    except Exception as exc:  # noqa: BLE001 - any validation error of a third-party model
        import warnings

        warnings.warn(f"ChatModelSLM could not rebuild {type(model).__name__} with fresh HTTP clients for this event "
                      f"loop ({type(exc).__name__}: {exc}); the shared model is used, and its pooled async "
                      "connections may belong to another event loop.", RuntimeWarning, stacklevel=3)
        return model, []
    for name in ("_client", "_async_client"):  # ChatOllama's own ollama clients, each wrapping an httpx client
        inner = getattr(getattr(fresh, name, None), "_client", None)
        if inner is not None and inner not in made:
            made.append(inner)
    return fresh, made


async def _close_clients(clients: list[Any]) -> None:
    """Close HTTP clients of a replaced per-loop model (sync ones with ``close``, async ones with ``aclose``);
    a connection bound to an ended loop cannot be closed cleanly and is dropped."""
    for client in clients:
        try:
            if hasattr(client, "aclose"):
                await client.aclose()
            else:
                client.close()
        except Exception:  # noqa: BLE001, S110 - its loop has ended; nothing more can be released
            pass



def _empty() -> Any:
    from langchain_core.messages import AIMessage

    return AIMessage(content="", response_metadata={"logprobs": []})


__all__ = ["ChatModelSLM", "generation_from_message", "parse_logprobs", "topk_entropy"]
