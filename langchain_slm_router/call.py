"""The per-call contract: what one call means, whichever framework made it.

``ChatSLMRouter`` (LangChain) and ``SLMRouterLLM`` (LlamaIndex) only translate their framework's call into a
:class:`CallContract` and the router's answer back; the meaning is here, once:

* **stop sequences**: a local answer (math, kept SLM answer) is cut at the first one; the fallback gets them bound
  (``stop=``) and stops itself;
* **call-time options** (``temperature=0.2``, ``tools=[...]``, ``response_format=...``): they go to the fallback,
  bound for this call; options only the fallback can honour (:data:`FALLBACK_ONLY`: tools, structured output) also
  send the query straight to it (``escalate``);
* **the fallback override** for this call (a fallback with bound tools or options);
* **non-text content** (images, audio, documents): the conversation goes to the fallback (the local stages read
  text only), in both integrations;
* **tool calls** the fallback answers with pass through to the caller (:meth:`CallContract.tool_calls`);
* **callbacks**: ``config`` (a LangChain ``RunnableConfig``) makes each stage a child run.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from langchain_core.language_models import BaseLanguageModel
from langchain_core.messages import AIMessage, BaseMessage

from langchain_slm_router.errors import FallbackUnavailableError
from langchain_slm_router.fallback import unwrap_fallback
from langchain_slm_router.stops import cut_at_stop, normalize_stop
from langchain_slm_router.trace import RouteResult

FALLBACK_ONLY = ("tools", "tool_choice", "functions", "function_call", "response_format", "format")
"""Call-time options only the fallback can honour: a call with one of them goes straight to the fallback."""

IGNORED_OPTIONS = ("model", "stream")
"""Call-time keys the frameworks pass that are not options of the answer."""


@dataclass(frozen=True)
class CallContract:
    """One call's stop sequences, escalation, fallback override and callbacks (see the module)."""

    stops: tuple[str, ...] = ()
    escalate: str | None = None
    """Why the query skips the local stages, when it does (``"tools"``, ``"structured output"``, ...)."""
    fallback: Any | None = None
    """The fallback for this call (the router's with the call's tools/options/stops bound); ``None``: the router's."""
    config: Any | None = None
    """LangChain ``RunnableConfig`` whose callbacks see each stage as a child run."""

    @classmethod
    def of(cls, router: Any, *, stop: str | Sequence[str] | None = None, options: Mapping[str, Any] | None = None,
           escalate: str | None = None, fallback: Any | None = None, config: Any | None = None) -> CallContract:
        """The contract of a call to ``router`` with these stop sequences and call-time options.

        Raises:
            FallbackUnavailableError: the call needs the fallback (tools, structured output) and there is none.
        """
        stops = normalize_stop(stop)
        opts = {k: v for k, v in (options or {}).items() if k not in IGNORED_OPTIONS and v is not None}
        base = fallback if fallback is not None else router.fallback
        override = fallback
        tools = opts.pop("tools", None)
        tool_choice = opts.pop("tool_choice", None)
        if tools:
            escalate = escalate or "tools"
            if base is None or not callable(getattr(base, "bind_tools", None)):
                raise FallbackUnavailableError(
                    "Tool calling needs a fallback chat model (the local stages cannot call tools); pass "
                    "fallback=ChatOllama(model=...) or another LangChain chat model.")
            override = base.bind_tools(tools, **({"tool_choice": tool_choice} if tool_choice is not None else {}))
        if opts and base is not None:
            if any(k in opts for k in FALLBACK_ONLY):
                escalate = escalate or "call options only the fallback supports (" + ", ".join(sorted(opts)) + ")"
            override = (override or base).bind(**opts)
        if stops and base is not None and isinstance(unwrap_fallback(base), BaseLanguageModel):
            override = (override or base).bind(stop=stops)
        return cls(stops=tuple(stops), escalate=escalate, fallback=override, config=config)

    def route_kwargs(self) -> dict[str, Any]:
        """The keyword arguments of ``SLMRouter.route`` & co. for this call (besides the query and config)."""
        return {"escalate": self.escalate, "fallback": self.fallback}

    def text(self, result: RouteResult) -> str:
        """The answer's text: a local answer cut at the first stop sequence; the fallback's as it answered (it
        was given the stops)."""
        if result.stage == "llm" and isinstance(result.llm_message, BaseMessage):
            text = result.llm_message.text
            return text if isinstance(text, str) else str(text)
        return cut_at_stop(result.answer, self.stops)[0]

    @staticmethod
    def tool_calls(result: RouteResult) -> list[dict[str, Any]]:
        """The tool calls the fallback answered with (``[]`` for local answers)."""
        msg = result.llm_message if result.stage == "llm" else None
        return [dict(call) for call in msg.tool_calls] if isinstance(msg, AIMessage) else []

    @staticmethod
    def usage(result: RouteResult) -> dict[str, int]:
        """Token totals of every model that ran: ``input_tokens``, ``output_tokens``, ``total_tokens``."""
        return {"input_tokens": result.input_tokens, "output_tokens": result.output_tokens,
                "total_tokens": result.total_tokens}


__all__ = ["FALLBACK_ONLY", "IGNORED_OPTIONS", "CallContract"]
