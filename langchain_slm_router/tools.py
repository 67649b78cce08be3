"""The router's parts as LangChain agent tools.

* :func:`make_math_tool` / :data:`math_tool`: the sympy math engine as a tool. It answers arithmetic, equations,
  derivatives, integrals, simplification, factoring, percentages, powers, roots and fractions exactly, and says
  so plainly when a question is not math it can solve (it never guesses). The tool message's ``artifact`` is the
  engine's result (kind, normalised expression, latency).
* :func:`make_router_tool`: the whole router (math engine, local SLM behind its gate, fallback) as a tool that
  answers a self-contained question. The tool message's ``artifact`` is the route trace (stage, signals,
  threshold, latencies, fallback model), so an agent's trace shows which component answered.

LangChain's generic ``Runnable.as_tool`` works too, on a chain that takes a typed field (a chat model's own input
type is a union that ``as_tool`` cannot turn into arguments)::

    (itemgetter("question") | router | StrOutputParser()).as_tool(
        name="ask_router", description="...", arg_types={"question": str})

these helpers add the descriptions an agent's model needs, a one-field argument schema, and the trace as artifact.
"""

from __future__ import annotations

from typing import Any

from langchain_core.tools import BaseTool, StructuredTool
from pydantic import BaseModel, Field

from langchain_slm_router.math_engine import MathEngine

MATH_TOOL_DESCRIPTION = (
    "Exact math with sympy. Input: one math question or expression in plain words or notation, e.g. "
    "'17 * 23 + 4', 'solve 3x - 7 = 20', 'derivative of x^2*cos(x)', 'integrate x*sin(x)', 'factor x^2 - 5x + 6', "
    "'what is 15% of 240', 'sqrt(50)'. Returns the exact answer, or says that the input is not math it can solve "
    "(it never guesses). Use it for any calculation instead of computing in your head."
)

ROUTER_TOOL_DESCRIPTION = (
    "Answer a self-contained question cheaply: exact math is solved by sympy, simple factual or general questions "
    "by a small local model when it is confident, and harder ones by a large model. Input: the full question in "
    "one sentence, with any needed context. Returns the answer text."
)


class MathToolInput(BaseModel):
    """Arguments of the math tool."""

    query: str = Field(description="The math question or expression, e.g. 'solve 3x - 7 = 20'.")


class RouterToolInput(BaseModel):
    """Arguments of the router tool."""

    question: str = Field(description="The complete question to answer, with any context it needs.")


def make_math_tool(
    engine: MathEngine | None = None, *, name: str = "calculator", description: str = MATH_TOOL_DESCRIPTION
) -> BaseTool:
    """The math engine as a LangChain tool (``content_and_artifact``: the answer text, and the engine's result).

    Args:
        engine: the :class:`MathEngine` to use (bounds, timeouts); a default one when omitted.
        name: the tool name the agent's model sees.
        description: what the model reads to decide when to call it.
    """
    engine = engine or MathEngine()

    def _solve(query: str) -> tuple[str, dict[str, Any]]:
        result = engine.explain(query)
        if hasattr(result, "answer"):
            return str(result.answer), result.model_dump()
        return (f"Not solved: the input is not math this calculator can solve exactly ({result.reason}).",
                result.model_dump())

    return StructuredTool.from_function(
        func=_solve, name=name, description=description, args_schema=MathToolInput,
        response_format="content_and_artifact",
    )


def make_router_tool(
    router: Any, *, name: str = "ask_router", description: str = ROUTER_TOOL_DESCRIPTION
) -> BaseTool:
    """The whole router as a LangChain tool (``content_and_artifact``: the answer, and the route trace).

    Args:
        router: a :class:`~langchain_slm_router.chat_model.ChatSLMRouter` or a core
            :class:`~langchain_slm_router.router.SLMRouter`.
        name: the tool name the agent's model sees.
        description: what the model reads to decide when to call it.
    """
    core = getattr(router, "router", router)

    def _ask(question: str) -> tuple[str, dict[str, Any]]:
        result = core.route(question)
        return result.answer, result.trace()

    async def _aask(question: str) -> tuple[str, dict[str, Any]]:
        result = await core.aroute(question)
        return result.answer, result.trace()

    return StructuredTool.from_function(
        func=_ask, coroutine=_aask, name=name, description=description, args_schema=RouterToolInput,
        response_format="content_and_artifact",
    )


math_tool: BaseTool = make_math_tool()
"""A ready-made math tool named ``calculator`` over a default :class:`MathEngine`."""

__all__ = [
    "MATH_TOOL_DESCRIPTION",
    "ROUTER_TOOL_DESCRIPTION",
    "make_math_tool",
    "make_router_tool",
    "math_tool",
]
