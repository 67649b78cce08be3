"""What the router's agent tools are called, what they say and what they answer: one source for both integrations.

The LangChain tools (:mod:`langchain_slm_router.tools`) and the LlamaIndex tools
(:mod:`llama_index_integration.tools`) are thin wrappers over this module: the same names, descriptions, argument
(``question``), answers and decline message, so an agent sees the same tools whichever framework hosts it.

* the math tool (:data:`MATH_TOOL_NAME`): the sympy math engine alone; it answers exactly or declines with
  :func:`math_decline_message` (it never guesses);
* the router tool (:data:`ROUTER_TOOL_NAME`): the whole router (math engine, local SLM behind its gate, fallback).

Both return ``(content, artifact)``: the text the agent reads and the evidence (the engine's result; the route
trace).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from langchain_slm_router.math_engine import MathAnswer, MathEngine
from langchain_slm_router.router import SLMRouter

MATH_TOOL_NAME = "calculator"
"""The math tool's name, as the agent's model sees it."""

ROUTER_TOOL_NAME = "ask_router"
"""The router tool's name, as the agent's model sees it."""

MATH_TOOL_DESCRIPTION = (
    "Exact math with sympy. Input: one math question or expression in plain words or notation, e.g. "
    "'17 * 23 + 4', 'solve 3x - 7 = 20', 'derivative of x^2*cos(x)', 'integrate x*sin(x)', 'factor x^2 - 5x + 6', "
    "'what is 15% of 240', 'sqrt(50)', 'the average of 3, 5 and 10', '7 choose 3'. Returns the exact answer, or "
    "says that the input is not math it can solve (it never guesses). Use it for any calculation instead of "
    "computing in your head."
)
"""What the math tool's description says (both integrations)."""

ROUTER_TOOL_DESCRIPTION = (
    "Answer a self-contained question cheaply: exact math is solved by sympy, simple factual or general questions "
    "by a small local model when it is confident, and harder ones by a large model. Input: the full question in "
    "one sentence, with any needed context. Returns the answer text."
)
"""What the router tool's description says (both integrations)."""



class MathToolInput(BaseModel):
    """The math tool's one argument (both integrations' argument schema)."""

    question: str = Field(description="The math question or expression, e.g. 'solve 3x - 7 = 20'.")


class RouterToolInput(BaseModel):
    """The router tool's one argument (both integrations' argument schema)."""

    question: str = Field(description="The complete question to answer, with any context it needs.")


def math_decline_message(reason: str) -> str:
    """The math tool's answer when the engine declines (``reason``: the engine's own)."""
    return f"Not solved: the input is not math this calculator can solve exactly ({reason})."


def solve_math(engine: MathEngine, question: str) -> tuple[str, dict[str, Any]]:
    """The math tool's ``(content, artifact)``: the exact answer, or the decline message; the engine's result."""
    result = engine.explain(question)
    if isinstance(result, MathAnswer):
        return result.answer, result.model_dump()
    return math_decline_message(result.reason), result.model_dump()


def core_router(router: Any | None) -> SLMRouter:
    """The :class:`SLMRouter` behind ``router``: itself, an integration's ``.router``, or a default one (``None``)."""
    if router is None:
        return SLMRouter()
    core = getattr(router, "router", router)
    if not isinstance(core, SLMRouter):
        raise TypeError(f"expected an SLMRouter, ChatSLMRouter or SLMRouterLLM, got {type(router).__name__}")
    return core


def ask_router(router: SLMRouter, question: str) -> tuple[str, dict[str, Any]]:
    """The router tool's ``(content, artifact)``: the answer and the route trace."""
    result = router.route(question)
    return result.answer, result.trace()


async def aask_router(router: SLMRouter, question: str) -> tuple[str, dict[str, Any]]:
    """Async :func:`ask_router`."""
    result = await router.aroute(question)
    return result.answer, result.trace()


__all__ = [
    "MATH_TOOL_DESCRIPTION",
    "MATH_TOOL_NAME",
    "MathToolInput",
    "ROUTER_TOOL_DESCRIPTION",
    "ROUTER_TOOL_NAME",
    "RouterToolInput",
    "aask_router",
    "ask_router",
    "core_router",
    "math_decline_message",
    "solve_math",
]
