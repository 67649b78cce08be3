"""The router as a LangChain chat model: :class:`ChatSLMRouter`.

``ChatSLMRouter`` is a :class:`~langchain_core.language_models.chat_models.BaseChatModel` (hence a ``Runnable``)
that wraps the routing core, :class:`~langchain_slm_router.router.SLMRouter`. Wherever a chain, a RAG pipeline or
an agent takes ``ChatOllama(...)`` or ``ChatOpenAI(...)``, it takes ``ChatSLMRouter(...)``:

.. code-block:: python

    from langchain_ollama import ChatOllama
    from langchain_slm_router import ChatSLMRouter

    llm = ChatSLMRouter(fallback=ChatOllama(model="mistral"), threshold=0.6)
    msg = llm.invoke("What is 17 * 23 + 4?")
    msg.content                              # '395'
    msg.response_metadata["stage"]           # 'math'
    msg.response_metadata["route"]           # the full trace: signals, threshold, latencies, fallback model

What a caller gets:

* ``AIMessage.content``: the answer of the stage that answered (``math``, ``slm`` or ``llm``).
* ``response_metadata``: ``stage``, ``model_name`` (the model that answered: ``sympy``, the SLM's name, or the
  fallback's model), ``route`` (the whole :meth:`RouteResult.trace`), and, when the fallback answered, the
  fallback's own response metadata (``done_reason``, ``model_provider`` ...).
* ``usage_metadata``: the tokens of every model that ran (the SLM's draft included when it was escalated).
* Callbacks and tracers see one chat-model run per call; on ``invoke``/``batch`` the stages that ran are its
  child runs (``math_engine``, ``slm``, and the fallback's own chat-model run).

Streaming: the gate needs the SLM's whole answer (its token probabilities) before it can decide, so a math answer
or a kept SLM answer is complete before the first chunk is sent, then sent in word pieces; an escalated answer
streams the fallback's own chunks as the fallback produces them. The last chunk carries the metadata.

Tools and structured output: the local stages cannot call tools or follow a schema, so :meth:`bind_tools` and
:meth:`with_structured_output` send the request straight to the fallback (``escalate="tools"``), bound with the
tools or schema; the result is the fallback's own (``tool_calls`` included).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.language_models.base import BaseLanguageModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.messages.ai import UsageMetadata
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable, RunnableConfig, RunnableLambda
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import BaseModel, Field, SerializeAsAny, SerializerFunctionWrapHandler, field_serializer, model_validator

from langchain_slm_router.call import CallContract
from langchain_slm_router.errors import FallbackUnavailableError
from langchain_slm_router.fallback import fallback_name
from langchain_slm_router.gates import Gate
from langchain_slm_router.gates.defaults import gate_reference
from langchain_slm_router.router import SLMRouter, word_pieces
from langchain_slm_router.savings import RouterStats
from langchain_slm_router.trace import RouteResult

# Call options that only the fallback can honour: a request carrying one skips the local stages.
_LC_ID = re.compile(r"^lc_|^run-")


class ChatSLMRouter(BaseChatModel):
    """A chat model that answers with the cheapest component that can answer well.

    Math goes to sympy, everything else to a local small model (SmolLM2-135M-Instruct by default) whose answer is
    kept when its confidence passes the gate, else to the fallback chat model (default ``ChatOllama(model="mistral")``).

    Setup:
        .. code-block:: bash

            pip install langchain-slm-router
            ollama pull mistral   # the default fallback; any LangChain chat model can be the fallback

    Key init args:
        router: the routing core (:class:`SLMRouter`); built from the other arguments when not given.
        threshold: the gate's headline threshold (``gate.with_threshold``; for the default gate of the default SLM,
            the minimum calibrated P(correct); for the seed's rule, the minimum mean token probability).
        gate: the :class:`~langchain_slm_router.gates.Gate`, or a registered name (``"threshold"``: the seed's
            rule; ``"fitted"``); default: the router's (the shipped learned gate fitted for the SLM's weights, else
            ``GatePolicy``).
        fallback: any LangChain chat model; ``None`` = no fallback (low-confidence SLM answers are returned,
            marked ``low_confidence`` in the trace).
        slm, math_engine, on_fallback_error, fallback_retries, max_query_chars: passed to
            :class:`SLMRouter` (see there).
        max_tokens: the SLM's ``max_new_tokens``; temperature: the SLM's sampling temperature (0 = greedy).
        stop: default stop sequences (the SLM answer is cut at the first one; the fallback gets them).
        max_retries: alias of ``fallback_retries``.

    Instantiate:
        .. code-block:: python

            from langchain_ollama import ChatOllama
            from langchain_slm_router import ChatSLMRouter

            llm = ChatSLMRouter(fallback=ChatOllama(model="mistral"), threshold=0.6, max_tokens=128)

    Invoke:
        .. code-block:: python

            llm.invoke([("system", "Answer briefly."), ("human", "What is the capital of France?")])

    Stream:
        .. code-block:: python

            for chunk in llm.stream("Who wrote Hamlet?"):
                print(chunk.text, end="")

    Tool calling (handled by the fallback):
        .. code-block:: python

            llm.bind_tools([get_weather]).invoke("Weather in Paris?").tool_calls

    Runtime configuration:
        .. code-block:: python

            from langchain_core.runnables import ConfigurableField

            llm = ChatSLMRouter().configurable_fields(threshold=ConfigurableField(id="threshold"))
            llm.invoke("...", config={"configurable": {"threshold": 0.9}})

    Response metadata:
        ``msg.response_metadata["stage"]``, ``["model_name"]`` and ``["route"]`` (the trace); ``msg.usage_metadata``.

    The routing fields (``router``, ``threshold``, ``gate``, ``fallback``, ``max_tokens``, ``temperature``) are
    frozen: assigning one raises a ``ValidationError`` instead of being silently ignored. Change them with
    ``model_copy(update={...})`` (which goes through the constructor), a new instance, or ``configurable_fields``.
    The construction arguments are the same as :class:`~llama_index_integration.llm.SLMRouterLLM`'s (both call
    :meth:`SLMRouter.from_options`).
    """

    router: SLMRouter = Field(default_factory=SLMRouter, frozen=True)
    """The routing core, with ``gate`` (``threshold`` applied), ``fallback`` and the SLM settings folded in."""
    threshold: float | None = Field(default=None, ge=0.0, le=1.0, frozen=True)
    """The gate's headline threshold (``Gate.with_threshold``); ``None`` keeps the gate's own."""
    gate: SerializeAsAny[Gate] | None = Field(default=None, frozen=True)
    """The gate before ``threshold`` is applied (defaults to the router's); any :class:`Gate`."""
    fallback: Any | None = Field(default=None, frozen=True)
    """The fallback chat model in use (defaults to the router's: ``ChatOllama(model="mistral")``)."""
    max_tokens: int | None = Field(default=None, ge=1, le=4096, frozen=True)
    """Most tokens the SLM generates (its ``max_new_tokens``); ``None`` keeps the SLM's setting."""
    temperature: float | None = Field(default=None, ge=0.0, frozen=True)
    """The SLM's sampling temperature (0 = greedy); ``None`` keeps the SLM's setting."""
    stop: list[str] | None = None
    """Default stop sequences."""
    streaming: bool | None = None
    """``True``: ``invoke`` streams internally (LangChain's standard flag); ``False`` disables streaming."""

    @field_serializer("gate", mode="wrap")
    def _gate_by_reference(self, gate: Gate | None, handler: SerializerFunctionWrapHandler) -> Any:
        """A shipped gate file is dumped as a reference, as in :class:`SLMRouter`'s dump."""
        return gate_reference(gate) or handler(gate)

    @model_validator(mode="before")
    @classmethod
    def _fold_into_router(cls, data: Any) -> Any:
        """Build the effective router with :meth:`SLMRouter.from_options` from ``router`` and the other arguments."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        fields = {k: data.pop(k) for k in list(data) if k in SLMRouter.model_fields and k not in cls.model_fields}
        for name in ("gate", "fallback"):
            if data.get(name) is not None or (name == "fallback" and name in data):
                fields[name] = data[name]
        router = SLMRouter.from_options(data.get("router"), max_retries=data.pop("max_retries", None), **fields)
        data["gate"] = router.gate  # before the threshold, so that a new threshold or gate re-applies cleanly
        data["fallback"] = router.fallback
        data["router"] = router.with_options(threshold=data.get("threshold"), max_tokens=data.get("max_tokens"),
                                             temperature=data.get("temperature"), overflow=data.pop("overflow", None))
        return data

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> ChatSLMRouter:
        """A copy; an ``update`` goes through the constructor, so that routing fields are applied, not just stored."""
        if not update:
            return super().model_copy(deep=deep)
        return type(self)(**{**{k: getattr(self, k) for k in type(self).model_fields}, **update})

    # ------------------------------------------------------------------ identity
    @property
    def _llm_type(self) -> str:
        return "slm-router"

    @property
    def model_name(self) -> str:
        """The pipeline's name (:attr:`SLMRouter.display_name`): ``"slm-router:<SLM>+<fallback>"``."""
        return self.router.display_name

    def stats(self) -> RouterStats:
        """The wrapped router's running totals and estimated savings (:meth:`SLMRouter.stats`)."""
        return self.router.stats()

    @property
    def _identifying_params(self) -> dict[str, Any]:
        router = self.router
        slm = router.slm
        return {
            "model_name": self.model_name,
            "math_engine": router.math_engine is not None,
            "slm": slm.model_name if slm is not None else None,
            "max_new_tokens": slm.max_new_tokens if slm is not None else None,
            "temperature": getattr(slm, "temperature", None),
            "gate": router.gate.identity(),
            "threshold": router.gate.threshold,
            "fallback": fallback_name(router.fallback) if router.fallback is not None else None,
            "on_fallback_error": router.on_fallback_error,
            "fallback_retries": router.fallback_retries,
            "overflow": slm.overflow if slm is not None else None,
            "stop": self.stop,
        }

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> Any:
        params = super()._get_ls_params(stop=stop, **kwargs)
        slm = self.router.slm
        params["ls_provider"] = "slm_router"
        params["ls_model_name"] = kwargs.get("model") or self.model_name
        params["ls_model_type"] = "chat"
        if slm is not None:
            if getattr(slm, "temperature", None) is not None:
                params["ls_temperature"] = slm.temperature
            params["ls_max_tokens"] = slm.max_new_tokens
        stops = stop if stop is not None else self.stop
        if stops:
            params["ls_stop"] = list(stops)
        else:
            params.pop("ls_stop", None)
        return params

    # ------------------------------------------------------------------ generation
    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        call = self._contract(stop, kwargs, run_manager)
        result = self.router.route(messages, call.config, **call.route_kwargs())
        return ChatResult(generations=[ChatGeneration(message=self._message(result, call))])

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        call = self._contract(stop, kwargs, run_manager)
        result = await self.router.aroute(messages, call.config, **call.route_kwargs())
        return ChatResult(generations=[ChatGeneration(message=self._message(result, call))])

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        call = self._contract(stop, kwargs, run_manager)
        for part in self.router.stream(messages, call.config, **call.route_kwargs()):
            yield from self._part_chunks(part, call)

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        call = self._contract(stop, kwargs, run_manager)
        async for part in self.router.astream(messages, call.config, **call.route_kwargs()):
            for chunk in self._part_chunks(part, call):
                yield chunk

    # ------------------------------------------------------------------ tools and structured output
    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable | BaseTool],
        *,
        tool_choice: dict | str | bool | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """Bind tools; requests with tools go to the fallback, which must support tool calling.

        The tools are converted to the OpenAI tool format (which every LangChain chat model's ``bind_tools``
        accepts) and, at call time, bound to the fallback with its own ``bind_tools``. The local stages cannot
        call tools, so such a request skips them (its trace reason is ``"sent to the fallback: tools"``), and the
        answer, ``tool_calls`` included, is the fallback's.

        Raises:
            FallbackUnavailableError: no fallback is configured.
            NotImplementedError: the fallback cannot bind tools.
        """
        self._require_fallback("bind_tools", "bind_tools")
        formatted = [convert_to_openai_tool(t) for t in tools]
        if tool_choice is not None and tool_choice is not False:
            kwargs["tool_choice"] = tool_choice
        return self.bind(tools=formatted, **kwargs)

    def with_structured_output(
        self,
        schema: dict | type,
        *,
        include_raw: bool = False,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, dict | BaseModel]:
        """Structured output from the fallback: ``fallback.with_structured_output(schema, ...)`` behind the router.

        The SLM cannot follow a schema, so every request goes to the fallback's structured-output runnable
        (``method``, ``strict`` and the other options are the fallback's); the output is exactly the fallback's
        (a pydantic object, a dict, or ``{"raw", "parsed", "parsing_error"}`` with ``include_raw=True``). The
        router adds its input checks, typed errors and transient-failure retries.

        Raises:
            FallbackUnavailableError: no fallback is configured.
            NotImplementedError: the fallback has no structured output.
        """
        fallback = self._require_fallback("with_structured_output", "with_structured_output")
        structured = fallback.with_structured_output(schema, include_raw=include_raw, **kwargs)
        router = self.router

        def _structured(messages: Any, config: RunnableConfig) -> Any:
            return router.route(messages, config, escalate="structured output", fallback=structured).llm_message

        async def _astructured(messages: Any, config: RunnableConfig) -> Any:
            result = await router.aroute(messages, config, escalate="structured output", fallback=structured)
            return result.llm_message

        return RunnableLambda(_structured, afunc=_astructured, name="ChatSLMRouterStructuredOutput")

    # ------------------------------------------------------------------ helpers
    def _require_fallback(self, what: str, method: str) -> Any:
        fallback = self.router.fallback
        if fallback is None:
            raise FallbackUnavailableError(
                f"{what} needs a fallback chat model (the local stages cannot call tools or follow a schema); "
                "pass fallback=ChatOllama(model=...) or another LangChain chat model."
            )
        if not callable(getattr(fallback, method, None)):
            raise NotImplementedError(f"The fallback {type(fallback).__name__} has no {method}().")
        return fallback

    def _contract(self, stop: list[str] | None, kwargs: dict[str, Any], run_manager: Any | None) -> CallContract:
        """The call's :class:`~langchain_slm_router.call.CallContract` (stops, options, fallback, callbacks)."""
        return CallContract.of(self.router, stop=stop if stop is not None else self.stop, options=kwargs,
                               config=_child_config(run_manager))

    def _message(self, result: RouteResult, call: CallContract) -> AIMessage:
        metadata = self._metadata(result)
        usage = _usage(result)
        fallback_msg = result.llm_message if result.stage == "llm" else None
        if isinstance(fallback_msg, AIMessage):
            return AIMessage(
                content=fallback_msg.content,
                additional_kwargs=dict(fallback_msg.additional_kwargs),
                response_metadata=metadata,
                tool_calls=list(fallback_msg.tool_calls),
                invalid_tool_calls=list(fallback_msg.invalid_tool_calls),
                usage_metadata=usage,
                id=_keep_id(fallback_msg.id),
            )
        return AIMessage(content=call.text(result), response_metadata=metadata, usage_metadata=usage)

    def _metadata(self, result: RouteResult) -> dict[str, Any]:
        meta: dict[str, Any] = {}
        fallback_msg = result.llm_message if result.stage == "llm" else None
        if isinstance(fallback_msg, BaseMessage):
            meta.update(fallback_msg.response_metadata or {})
            meta.pop("output_version", None)
            meta.pop("model_provider", None)
        meta["model_name"] = _answering_model(result)
        meta["stage"] = result.stage
        meta["route"] = result.trace()
        return meta

    def _part_chunks(self, part: Any, call: CallContract) -> Iterator[ChatGenerationChunk]:
        """ChatGenerationChunks for one router StreamPart.

        The fallback's chunks pass through (text, tool-call chunks, ids), without their usage and response
        metadata, which the last chunk carries for the whole answer (so that counts are not summed twice).
        Local answers (math, kept SLM) are complete when the result arrives and are sent then, in word pieces.
        """
        if part.chunk is not None:
            chunk = part.chunk
            if isinstance(chunk, AIMessageChunk):
                yield ChatGenerationChunk(message=AIMessageChunk(
                    content=chunk.content,
                    additional_kwargs=dict(chunk.additional_kwargs),
                    tool_call_chunks=list(chunk.tool_call_chunks),
                    id=_keep_id(chunk.id),
                ))
            elif part.text:
                yield ChatGenerationChunk(message=AIMessageChunk(content=part.text))
        if part.result is None:
            return
        result: RouteResult = part.result
        if result.stage != "llm":
            text = call.text(result)
            for piece in word_pieces(text) if text else []:
                yield ChatGenerationChunk(message=AIMessageChunk(content=piece))
        yield ChatGenerationChunk(message=AIMessageChunk(
            content="", response_metadata=self._metadata(result), usage_metadata=_usage(result),
            chunk_position="last",
        ))


def _child_config(run_manager: Any | None) -> RunnableConfig | None:
    """A config whose callbacks make the stages child runs of this chat-model run."""
    if run_manager is None:
        return None
    from langchain_core.callbacks import AsyncCallbackManager, CallbackManager

    cls = AsyncCallbackManager if isinstance(run_manager, AsyncCallbackManagerForLLMRun) else CallbackManager
    manager = cls(handlers=[], parent_run_id=run_manager.run_id)
    manager.set_handlers(run_manager.inheritable_handlers)
    manager.add_tags(run_manager.inheritable_tags)
    manager.add_metadata(run_manager.inheritable_metadata)
    return {"callbacks": manager}


def _keep_id(msg_id: str | None) -> str | None:
    """Provider message ids are kept; LangChain run ids of the fallback's own run are dropped (ours is used)."""
    return None if msg_id is None or _LC_ID.match(msg_id) else msg_id


def _answering_model(result: RouteResult) -> str:
    if result.stage == "math":
        return "sympy"
    if result.stage == "slm":
        return result.slm_model or "slm"
    if result.stage == "cache":
        return "cache"
    msg = result.llm_message
    name = getattr(msg, "response_metadata", {}).get("model_name") if isinstance(msg, BaseMessage) else None
    return str(name or result.fallback_model or "fallback")


def _usage(result: RouteResult) -> UsageMetadata:
    """Tokens of every model that ran for this answer (the route result's totals)."""
    return UsageMetadata(**CallContract.usage(result))  # type: ignore[typeddict-item]


__all__ = ["ChatSLMRouter"]
