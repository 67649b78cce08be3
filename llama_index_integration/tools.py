"""The router and its math engine as LlamaIndex agent tools (``FunctionTool``).

An agent (``ReActAgent``, ``FunctionAgent`` with a tool-calling LLM) can hand questions to the router: easy and
math questions are answered locally, hard ones by the router's fallback. To expose a RAG pipeline instead, wrap a
query engine whose LLM is :class:`~llama_index_integration.llm.SLMRouterLLM` in LlamaIndex's own
``QueryEngineTool.from_defaults(query_engine, name=..., description=...)``.

The names, descriptions, argument and decline message come from :mod:`langchain_slm_router.tool_specs`, which the
LangChain tools (:mod:`langchain_slm_router.tools`) use too; the tool output's ``raw_output`` is the answer text.
"""

from __future__ import annotations

from typing import Any

from llama_index.core.tools import FunctionTool

from langchain_slm_router import tool_specs as specs
from langchain_slm_router.math_engine import MathEngine


def router_tool(router: Any | None = None, *, name: str = specs.ROUTER_TOOL_NAME,
                description: str = specs.ROUTER_TOOL_DESCRIPTION) -> FunctionTool:
    """The router (an :class:`~llama_index_integration.llm.SLMRouterLLM`, a core ``SLMRouter``, or a default one)
    as a ``FunctionTool`` with a sync and an async function; its output is the answer text, without the trace
    (use :class:`SLMRouterLLM`'s responses when the trace is needed)."""
    core = specs.core_router(router)

    def ask(question: str) -> str:
        """Answer the question."""
        return specs.ask_router(core, question)[0]

    async def aask(question: str) -> str:
        """Answer the question."""
        return (await specs.aask_router(core, question))[0]

    return FunctionTool.from_defaults(fn=ask, async_fn=aask, name=name, description=description,
                                      fn_schema=specs.RouterToolInput)


def math_tool(engine: MathEngine | None = None, *, name: str = specs.MATH_TOOL_NAME,
              description: str = specs.MATH_TOOL_DESCRIPTION) -> FunctionTool:
    """A ``FunctionTool`` over the sympy math engine alone (exact answers, declines non-math input)."""
    math = engine or MathEngine()

    def solve(question: str) -> str:
        """Solve the math question."""
        return specs.solve_math(math, question)[0]

    return FunctionTool.from_defaults(fn=solve, name=name, description=description, fn_schema=specs.MathToolInput)


__all__ = ["math_tool", "router_tool"]
