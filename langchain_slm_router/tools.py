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

The names, descriptions, argument and decline message come from :mod:`langchain_slm_router.tool_specs`, which the
LlamaIndex tools (:mod:`llama_index_integration.tools`) use too.
"""

from __future__ import annotations

from typing import Any

from langchain_core.tools import BaseTool, StructuredTool

from langchain_slm_router.math_engine import MathEngine
from langchain_slm_router.tool_specs import (
    MATH_TOOL_DESCRIPTION,
    MATH_TOOL_NAME,
    ROUTER_TOOL_DESCRIPTION,
    ROUTER_TOOL_NAME,
    MathToolInput,
    RouterToolInput,
    aask_router,
    ask_router,
    core_router,
    solve_math,
)


def make_math_tool(
    engine: MathEngine | None = None, *, name: str = MATH_TOOL_NAME, description: str = MATH_TOOL_DESCRIPTION
) -> BaseTool:
    """The math engine as a LangChain tool (``content_and_artifact``: the answer text, and the engine's result).

    Args:
        engine: the :class:`MathEngine` to use (bounds, timeouts); a default one when omitted.
        name: the tool name the agent's model sees.
        description: what the model reads to decide when to call it.
    """
    engine = engine or MathEngine()

    def _solve(question: str) -> tuple[str, dict[str, Any]]:
        return solve_math(engine, question)

    return StructuredTool.from_function(
        func=_solve, name=name, description=description, args_schema=MathToolInput,
        response_format="content_and_artifact",
    )


def make_router_tool(
    router: Any | None = None, *, name: str = ROUTER_TOOL_NAME, description: str = ROUTER_TOOL_DESCRIPTION
) -> BaseTool:
    """The whole router as a LangChain tool (``content_and_artifact``: the answer, and the route trace).

    Args:
        router: a :class:`~langchain_slm_router.chat_model.ChatSLMRouter` or a core
            :class:`~langchain_slm_router.router.SLMRouter`; a default router when omitted.
        name: the tool name the agent's model sees.
        description: what the model reads to decide when to call it.
    """
    core = core_router(router)

    def _ask(question: str) -> tuple[str, dict[str, Any]]:
        return ask_router(core, question)

    async def _aask(question: str) -> tuple[str, dict[str, Any]]:
        return await aask_router(core, question)

    return StructuredTool.from_function(
        func=_ask, coroutine=_aask, name=name, description=description, args_schema=RouterToolInput,
        response_format="content_and_artifact",
    )


math_tool: BaseTool = make_math_tool()
"""A ready-made math tool (named :data:`~langchain_slm_router.tool_specs.MATH_TOOL_NAME`) over a default engine."""

__all__ = [
    "MATH_TOOL_DESCRIPTION",
    "ROUTER_TOOL_DESCRIPTION",
    "make_math_tool",
    "make_router_tool",
    "math_tool",
]
