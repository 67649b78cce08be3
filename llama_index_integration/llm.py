"""The router as a LlamaIndex LLM: ``Settings.llm = SLMRouterLLM(...)`` or ``llm=`` on any engine or agent.

:class:`SLMRouterLLM` wraps the core :class:`~langchain_slm_router.router.SLMRouter`; it does not run a pipeline
of its own. Each call converts LlamaIndex ``ChatMessage`` objects to LangChain messages (the router's input),
routes them (math engine, then the SLM behind its confidence gate, then the fallback) and returns LlamaIndex
responses carrying the route trace.

Where the trace is:

* ``CompletionResponse.additional_kwargs`` and ``ChatResponse.additional_kwargs``: the trace dict of
  :meth:`~langchain_slm_router.trace.RouteResult.trace` (``stage``, ``reason``, ``signals``, ``threshold``,
  ``gate_reasons``, ``latency_ms``, ``fallback_tried``, ``fallback_model``, ``usage``, ...).
* ``CompletionResponse.raw`` and ``ChatResponse.raw``: the same dict, whose ``usage`` also holds
  ``prompt_tokens`` / ``completion_tokens`` / ``total_tokens`` (the sums over the models that ran), the keys
  LlamaIndex's ``TokenCountingHandler`` reads.
* When streaming, the trace is on the *last* response of the stream.

RAG prompts and the SLM's context window
----------------------------------------
The SLM reads at most ``LocalSLM.max_input_tokens`` prompt tokens (1,536 by default). :attr:`SLMRouterLLM.metadata`
reports a ``context_window`` of ``context_fraction * (max_input_tokens - 32) + num_output`` tokens: 32 tokens are
kept for the SLM's chat template (role markers), and ``context_fraction`` (0.85 by default) is the margin for
LlamaIndex counting tokens with its own tokenizer, tiktoken, which on English text counts up to ~11% fewer tokens
than SmolLM2's. LlamaIndex's prompt helper packs the
retrieved context into that budget, and its response synthesizers (``compact``, ``refine``, ``tree_summarize``)
split context that does not fit over several LLM calls, so the QA prompts that reach the router fit the SLM whole:
nothing is cut.

A prompt that is still longer than the SLM accepts (an oversized chat history, a hand-written prompt, a custom
``context_window``) follows the SLM's ``overflow`` setting: ``"escalate"`` (the default: the whole prompt goes to
the fallback, whose context window is larger), ``"truncate"`` (the middle of the prompt is cut, keeping the
instructions at the start and the question at the end; this can drop retrieved context) or ``"error"``
(:class:`~langchain_slm_router.errors.QueryTooLongError`). Escalating is the default because truncating a RAG
prompt silently loses the passages that were retrieved to answer it.

The gate decides on the answer, not on the context: the confidence signals (mean token probability, ...) are
computed over the tokens the SLM *generates*, never over the prompt, so a long retrieved context does not raise or
lower them by itself; it only matters through the answer the model writes.

Tools and structured output
---------------------------
The SLM cannot call tools, so ``is_function_calling_model`` is ``False``: LlamaIndex agents use the router through
the ReAct text protocol (``ReActAgent``). Structured output (``structured_predict`` and its async and streaming
forms, hence ``as_structured_llm`` and LlamaIndex's text-completion programs run through them) is sent to the
fallback: a 135M model rarely writes valid JSON for a schema. To send any other call straight to the fallback,
pass ``escalate="reason"`` (and optionally ``fallback=`` another LangChain chat model for this call).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage, ToolMessage
from llama_index.core.base.llms.types import (
    ChatMessage,
    ChatResponse,
    ChatResponseAsyncGen,
    ChatResponseGen,
    CompletionResponse,
    CompletionResponseAsyncGen,
    CompletionResponseGen,
    ImageBlock,
    LLMMetadata,
    MessageRole,
    TextBlock,
    ToolCallBlock,
)
from llama_index.core.base.llms.generic_utils import (
    achat_to_completion_decorator,
    astream_chat_to_completion_decorator,
    chat_to_completion_decorator,
    stream_chat_to_completion_decorator,
)
from llama_index.core.bridge.pydantic import Field
from llama_index.core.constants import DEFAULT_CONTEXT_WINDOW
from llama_index.core.llms.callbacks import llm_chat_callback, llm_completion_callback
from llama_index.core.llms.llm import LLM

from langchain_slm_router.call import CallContract
from langchain_slm_router.errors import InvalidQueryError
from langchain_slm_router.router import ROUTER_OPTIONS, SLMRouter
from langchain_slm_router.savings import RouterStats
from langchain_slm_router.stops import StopCutter
from langchain_slm_router.trace import RouteResult

#: Keyword arguments of :class:`SLMRouterLLM` that configure the router (:meth:`SLMRouter.from_options`): its
#: fields, ``threshold``, ``max_tokens``, ``temperature``, ``overflow`` and ``max_retries``; the same as
#: :class:`~langchain_slm_router.chat_model.ChatSLMRouter` accepts.
ROUTER_FIELDS = frozenset({*SLMRouter.model_fields, *ROUTER_OPTIONS, "max_retries"})

_ROUTE_KWARGS = ("escalate", "fallback")
#: Prompt tokens kept back for the SLM's chat template (role markers, default system prompt's wrapping).
CHAT_TEMPLATE_TOKENS = 32
_SKIPPED_BLOCKS = ("thinking", "cache", "tool_call")  # tool calls are read apart, see _tool_calls


# ---------------------------------------------------------------------------------------------- conversion
def _block_to_langchain(block: Any) -> dict[str, Any] | None:
    """A LlamaIndex content block as a LangChain content block (``None``: nothing to send)."""
    if isinstance(block, TextBlock):
        return {"type": "text", "text": block.text}
    if isinstance(block, ImageBlock):
        if block.url is not None:
            return {"type": "image_url", "image_url": {"url": str(block.url)}}
        try:
            data = block.resolve_image(as_base64=True).read().decode("ascii")
        except Exception as exc:  # noqa: BLE001 - LlamaIndex raises several types for unreadable images
            raise InvalidQueryError(f"Cannot read the image block: {exc}") from exc
        mime = block.image_mimetype or "image/png"
        return {"type": "image_url", "image_url": {"url": f"data:{mime};base64,{data}"}}
    kind = getattr(block, "block_type", type(block).__name__)
    if kind in _SKIPPED_BLOCKS:
        return None
    if kind in ("audio", "document"):  # non-text content: the conversation goes to the fallback (the contract)
        return _file_block(block, kind)
    raise InvalidQueryError(
        f"Content blocks of type {kind!r} are not supported by SLMRouterLLM; send text or image blocks."
    )


def _file_block(block: Any, kind: str) -> dict[str, Any]:
    """An audio or document block as LangChain's standard ``audio`` / ``file`` content block."""
    url = getattr(block, "url", None)
    out: dict[str, Any] = {"type": "audio" if kind == "audio" else "file"}
    mime = getattr(block, "document_mimetype", None) or (f"audio/{block.format}" if getattr(block, "format", None)
                                                         else None)
    if mime:
        out["mime_type"] = mime
    if url is not None:
        out["url"] = str(url)
        return out
    try:
        raw = block.resolve_audio(as_base64=True) if kind == "audio" else block.resolve_document()
        data = raw.read()
    except Exception as exc:  # noqa: BLE001 - LlamaIndex raises several types for unreadable content
        raise InvalidQueryError(f"Cannot read the {kind} block: {exc}") from exc
    if kind == "document":
        import base64

        data = base64.b64encode(data)
    out["base64"] = data.decode("ascii") if isinstance(data, bytes) else str(data)
    return out


def _tool_calls(message: ChatMessage) -> list[dict[str, Any]]:
    """An assistant message's tool calls (``ToolCallBlock`` blocks) as LangChain tool calls."""
    calls = []
    for i, block in enumerate(message.blocks):
        if isinstance(block, ToolCallBlock):
            args = block.tool_kwargs
            if isinstance(args, str):
                try:
                    args = json.loads(args) if args.strip() else {}
                except json.JSONDecodeError:
                    args = {"input": args}
            args = args if isinstance(args, dict) else {"input": args}
            calls.append({"name": block.tool_name, "args": args, "id": block.tool_call_id or f"call_{i}",
                          "type": "tool_call"})
    return calls


def _content(message: ChatMessage) -> str | list[dict[str, Any]]:
    blocks = [b for b in (_block_to_langchain(block) for block in message.blocks) if b is not None]
    if all(b["type"] == "text" for b in blocks):
        return "\n".join(b["text"] for b in blocks)
    return blocks


def to_langchain_messages(messages: Sequence[ChatMessage]) -> list[BaseMessage]:
    """Convert LlamaIndex chat messages to the LangChain messages the router reads.

    Roles: ``system`` and ``developer`` become system messages, ``user`` human messages, ``assistant`` /
    ``chatbot`` / ``model`` AI messages, ``tool`` / ``function`` tool messages (``tool_call_id`` from
    ``additional_kwargs``). Text blocks are joined; image blocks become LangChain ``image_url`` blocks (such a
    conversation goes to the fallback: the local stages read text only), audio and document blocks LangChain's
    ``audio`` / ``file`` blocks (to the fallback too, as in ``ChatSLMRouter``); an assistant's ``ToolCallBlock``
    blocks become its ``tool_calls`` (tool traffic also goes to the fallback); thinking blocks are dropped; other
    block types raise :class:`~langchain_slm_router.errors.InvalidQueryError`.
    """
    out: list[BaseMessage] = []
    for message in messages:
        if not isinstance(message, ChatMessage):
            raise InvalidQueryError(
                f"SLMRouterLLM.chat expects LlamaIndex ChatMessage objects, got {type(message).__name__}."
            )
        content = _content(message)
        role = message.role.value if isinstance(message.role, MessageRole) else str(message.role)
        if role in ("system", "developer"):
            out.append(SystemMessage(content=content))
        elif role in ("assistant", "chatbot", "model"):
            out.append(AIMessage(content=content, tool_calls=_tool_calls(message)))
        elif role in ("tool", "function"):
            call_id = message.additional_kwargs.get("tool_call_id") or message.additional_kwargs.get("name", "")
            out.append(ToolMessage(content=content, tool_call_id=str(call_id)))
        else:
            out.append(HumanMessage(content=content))
    return out


def response_trace(result: RouteResult) -> dict[str, Any]:
    """The trace dict for ``raw`` / ``additional_kwargs``; ``usage`` gains LlamaIndex's token-count keys.

    The totals are the route result's (:attr:`RouteResult.input_tokens` ...), the ones ``ChatSLMRouter`` reports.
    """
    trace = result.trace()
    trace["usage"] = {**(trace.get("usage") or {}), "prompt_tokens": result.input_tokens,
                      "completion_tokens": result.output_tokens, "total_tokens": result.total_tokens}
    return trace


# ---------------------------------------------------------------------------------------------- the LLM
class SLMRouterLLM(LLM):
    """The SLM router (sympy math engine, local SLM with confidence gate, large-model fallback) as a LlamaIndex LLM.

    Every call goes through the wrapped :class:`~langchain_slm_router.router.SLMRouter`; the route trace is in the
    responses' ``additional_kwargs`` and ``raw`` (see the module docs). Calls are decorated with LlamaIndex's
    ``llm_chat_callback`` / ``llm_completion_callback``, so callback handlers (``LLM`` events) and
    instrumentation event handlers (``LLMChatStartEvent``, ``LLMCompletionEndEvent``, ...) see each of them.

    Args:
        router: the router to wrap (default: a new :class:`SLMRouter`).
        threshold, max_tokens, temperature, overflow, max_retries and any :class:`SLMRouter` field (``slm``,
            ``math_engine``, ``gate``, ``fallback``, ``on_fallback_error``, ``fallback_retries``,
            ``max_query_chars``): applied to ``router`` with :meth:`SLMRouter.from_options`, exactly as
            :class:`~langchain_slm_router.chat_model.ChatSLMRouter` applies them.
        context_window: the window reported to LlamaIndex, in tokens; default
            ``context_fraction * (slm.max_input_tokens - 32) + num_output``, so that RAG prompts fit the SLM whole.
        num_output: the answer length reported to LlamaIndex; default the SLM's ``max_new_tokens``.
        context_fraction: share of the SLM's input budget offered to LlamaIndex's prompt packing.

    Example:
        .. code-block:: python

            from llama_index.core import Settings
            from llama_index_integration import SLMRouterLLM

            Settings.llm = SLMRouterLLM()  # default fallback: ChatOllama(model="mistral")
            response = Settings.llm.complete("What is 17 * 23 + 4?")
            print(response.text, response.additional_kwargs["stage"])  # 395 math
    """

    router: SLMRouter = Field(
        default_factory=SLMRouter, exclude=True, description="The wrapped core router (math, SLM, gate, fallback)."
    )
    context_window: int | None = Field(
        default=None, gt=0, description="Context window reported to LlamaIndex (default: from the SLM's budget)."
    )
    num_output: int | None = Field(
        default=None, gt=0, description="Answer tokens reported to LlamaIndex (default: the SLM's max_new_tokens)."
    )
    context_fraction: float = Field(
        default=0.85, gt=0.0, le=1.0,
        description="Share of the SLM's max_input_tokens offered to LlamaIndex (margin for tokenizer mismatch).",
    )

    def __init__(self, router: SLMRouter | None = None, **kwargs: Any) -> None:
        options = {k: kwargs.pop(k) for k in list(kwargs) if k in ROUTER_FIELDS}
        super().__init__(router=SLMRouter.from_options(router, **options), **kwargs)

    @classmethod
    def class_name(cls) -> str:
        return "SLMRouterLLM"

    # ------------------------------------------------------------------ metadata
    @property
    def metadata(self) -> LLMMetadata:
        """Context window and answer length fitted to the SLM (see the module docs), chat model, no tools."""
        slm = self.router.slm
        num_output = self.num_output or (slm.max_new_tokens if slm is not None else 256)
        if self.context_window is not None:
            window = self.context_window
        elif slm is not None:
            budget = max(slm.max_input_tokens - CHAT_TEMPLATE_TOKENS, 1)
            window = max(int(budget * self.context_fraction), 1) + num_output
        else:
            window = DEFAULT_CONTEXT_WINDOW
        return LLMMetadata(
            context_window=window,
            num_output=num_output,
            is_chat_model=True,
            is_function_calling_model=False,
            model_name=self.model_name,
        )

    @property
    def model_name(self) -> str:
        """The pipeline's name (:attr:`SLMRouter.display_name`), e.g. ``slm-router:SmolLM2-135M-Instruct+ChatOllama(mistral)``."""
        return self.router.display_name

    def stats(self) -> RouterStats:
        """The wrapped router's running totals and estimated savings (:meth:`SLMRouter.stats`)."""
        return self.router.stats()

    # ------------------------------------------------------------------ helpers
    def _contract(self, kwargs: dict[str, Any]) -> CallContract:
        """The call's :class:`~langchain_slm_router.call.CallContract`: ``stop``, ``escalate``, ``fallback`` and
        any other keyword argument as a call-time option (bound to the fallback, as ``ChatSLMRouter`` does)."""
        options = {k: v for k, v in kwargs.items() if k not in (*_ROUTE_KWARGS, "stop", "formatted")}
        return CallContract.of(self.router, stop=kwargs.get("stop"), options=options,
                               escalate=kwargs.get("escalate"), fallback=kwargs.get("fallback"))

    @staticmethod
    def _chat_response(result: RouteResult, call: CallContract, delta: str | None = None) -> ChatResponse:
        """The answer (cut at the call's stops; the fallback's tool calls as ``ToolCallBlock`` blocks) with its
        trace in ``raw`` and ``additional_kwargs``."""
        trace = response_trace(result)
        blocks: list[Any] = [TextBlock(text=call.text(result))]
        blocks += [ToolCallBlock(tool_name=c["name"], tool_kwargs=c.get("args") or {}, tool_call_id=c.get("id"))
                   for c in call.tool_calls(result)]
        return ChatResponse(message=ChatMessage(role=MessageRole.ASSISTANT, blocks=blocks), delta=delta,
                            raw=trace, additional_kwargs=trace)

    @classmethod
    def _on_part(cls, call: CallContract) -> Callable[[Any], ChatResponse | None]:
        """Turns router stream parts into stream responses (the answer so far, cut at the call's stops); the last
        one carries the trace. ``None``: nothing to send for that part."""
        cutter = StopCutter(call.stops)
        so_far: list[str] = []

        def on_part(part: Any) -> ChatResponse | None:
            delta = cutter.feed(part.text) if part.text else ""
            if part.result is not None:
                return cls._chat_response(part.result, call, delta=delta + cutter.flush())
            if not delta:
                return None
            so_far.append(delta)
            return ChatResponse(message=ChatMessage(role=MessageRole.ASSISTANT, content="".join(so_far)), delta=delta)

        return on_part

    # ------------------------------------------------------------------ structured output
    @staticmethod
    def _escalated(llm_kwargs: dict[str, Any] | None) -> dict[str, Any]:
        return {"escalate": "structured output", **(llm_kwargs or {})}

    def structured_predict(
        self, output_cls: Any, prompt: Any, llm_kwargs: dict[str, Any] | None = None, **prompt_args: Any
    ) -> Any:
        """LlamaIndex's ``structured_predict``, answered by the fallback (the SLM cannot follow a JSON schema)."""
        return super().structured_predict(output_cls, prompt, llm_kwargs=self._escalated(llm_kwargs), **prompt_args)

    async def astructured_predict(
        self, output_cls: Any, prompt: Any, llm_kwargs: dict[str, Any] | None = None, **prompt_args: Any
    ) -> Any:
        """Async :meth:`structured_predict` (answered by the fallback)."""
        return await super().astructured_predict(
            output_cls, prompt, llm_kwargs=self._escalated(llm_kwargs), **prompt_args
        )

    def stream_structured_predict(
        self, output_cls: Any, prompt: Any, llm_kwargs: dict[str, Any] | None = None, **prompt_args: Any
    ) -> Any:
        """Streaming :meth:`structured_predict` (answered by the fallback)."""
        return super().stream_structured_predict(
            output_cls, prompt, llm_kwargs=self._escalated(llm_kwargs), **prompt_args
        )

    async def astream_structured_predict(
        self, output_cls: Any, prompt: Any, llm_kwargs: dict[str, Any] | None = None, **prompt_args: Any
    ) -> Any:
        """Async streaming :meth:`structured_predict` (answered by the fallback)."""
        return await super().astream_structured_predict(
            output_cls, prompt, llm_kwargs=self._escalated(llm_kwargs), **prompt_args
        )

    # ------------------------------------------------------------------ chat
    # The undecorated chat methods do the work; the public ones add LlamaIndex's callbacks, and the completion
    # methods are derived from the undecorated ones with LlamaIndex's own helpers (as llama-index-llms-ollama and
    # -openai do), so that a completion fires completion events only and carries the same trace.
    def _chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        call = self._contract(kwargs)
        result = self.router.route(to_langchain_messages(messages), call.config, **call.route_kwargs())
        return self._chat_response(result, call)

    async def _achat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        call = self._contract(kwargs)
        result = await self.router.aroute(to_langchain_messages(messages), call.config, **call.route_kwargs())
        return self._chat_response(result, call)

    def _stream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseGen:
        lc_messages, call = to_langchain_messages(messages), self._contract(kwargs)

        def gen() -> ChatResponseGen:
            on_part = self._on_part(call)
            for part in self.router.stream(lc_messages, call.config, **call.route_kwargs()):
                if (response := on_part(part)) is not None:
                    yield response

        return gen()

    async def _astream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseAsyncGen:
        lc_messages, call = to_langchain_messages(messages), self._contract(kwargs)

        async def gen() -> AsyncIterator[ChatResponse]:
            on_part = self._on_part(call)
            async for part in self.router.astream(lc_messages, call.config, **call.route_kwargs()):
                if (response := on_part(part)) is not None:
                    yield response

        return gen()

    @llm_chat_callback()
    def chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        """Route a conversation; the answer's message is the assistant's, the trace is in ``raw``."""
        return self._chat(messages, **kwargs)

    @llm_chat_callback()
    async def achat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        """Async :meth:`chat` (the SLM runs in a worker thread, the fallback through ``ainvoke``)."""
        return await self._achat(messages, **kwargs)

    @llm_chat_callback()
    def stream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseGen:
        """Stream a conversation's answer.

        Math answers and kept SLM answers are complete before the first response (the gate needs the whole SLM
        answer to decide) and then arrive as word pieces; an escalated answer streams the fallback's tokens as
        they come. The last response carries the trace.
        """
        return self._stream_chat(messages, **kwargs)

    @llm_chat_callback()
    async def astream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseAsyncGen:
        """Async :meth:`stream_chat`."""
        return await self._astream_chat(messages, **kwargs)

    # ------------------------------------------------------------------ completion (derived from chat)
    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        """Route a prompt (sent as one user message); the trace is in ``additional_kwargs`` and ``raw``."""
        return chat_to_completion_decorator(self._chat)(prompt, **kwargs)

    @llm_completion_callback()
    async def acomplete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        """Async :meth:`complete`."""
        return await achat_to_completion_decorator(self._achat)(prompt, **kwargs)

    @llm_completion_callback()
    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponseGen:
        """Stream a prompt's answer (see :meth:`stream_chat` for what arrives when)."""
        return stream_chat_to_completion_decorator(self._stream_chat)(prompt, **kwargs)

    @llm_completion_callback()
    async def astream_complete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> CompletionResponseAsyncGen:
        """Async :meth:`stream_complete`."""
        return await astream_chat_to_completion_decorator(self._astream_chat)(prompt, **kwargs)


__all__ = ["CHAT_TEMPLATE_TOKENS", "ROUTER_FIELDS", "SLMRouterLLM", "response_trace", "to_langchain_messages"]
