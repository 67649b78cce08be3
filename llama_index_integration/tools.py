"""The router and its math engine as LlamaIndex agent tools (``FunctionTool``).

An agent (``ReActAgent``, ``FunctionAgent`` with a tool-calling LLM) can hand questions to the router: easy and
math questions are answered locally, hard ones by the router's fallback. To expose a RAG pipeline instead, wrap a
query engine whose LLM is :class:`~llama_index_integration.llm.SLMRouterLLM` in LlamaIndex's own
``QueryEngineTool.from_defaults(query_engine, name=..., description=...)``.
"""

from __future__ import annotations

from llama_index.core.tools import FunctionTool

from langchain_slm_router.math_engine import MathEngine
from langchain_slm_router.router import SLMRouter
from llama_index_integration.llm import SLMRouterLLM

ROUTER_TOOL_DESCRIPTION = (
    "Answer a self-contained question: arithmetic, equations, derivatives and integrals are solved exactly; "
    "short factual questions are answered by a small local model, harder ones by a large model. "
    "Input: the full question as plain text."
)
MATH_TOOL_DESCRIPTION = (
    "Solve a math question exactly with sympy: arithmetic ('17 * 23 + 4'), percentages ('15% of 240'), "
    "equations ('solve 3x - 7 = 20'), derivatives, integrals, simplify, factor. Returns the exact answer, or "
    "says it is not a math question it can solve."
)


def _router_of(router: SLMRouter | SLMRouterLLM | None) -> SLMRouter:
    if router is None:
        return SLMRouter()
    return router.router if isinstance(router, SLMRouterLLM) else router


def router_tool(
    router: SLMRouter | SLMRouterLLM | None = None,
    *,
    name: str = "slm_router",
    description: str = ROUTER_TOOL_DESCRIPTION,
) -> FunctionTool:
    """A ``FunctionTool`` that answers a question with the router (sync and async).

    The tool returns the answer text; the stage that answered is not shown to the agent (use the router
    directly, or :class:`SLMRouterLLM`'s responses, when the trace is needed).
    """
    core = _router_of(router)

    def ask(question: str) -> str:
        """Answer the question."""
        return core.route(question).answer

    async def aask(question: str) -> str:
        """Answer the question."""
        return (await core.aroute(question)).answer

    return FunctionTool.from_defaults(fn=ask, async_fn=aask, name=name, description=description)


def math_tool(
    engine: MathEngine | None = None, *, name: str = "math_engine", description: str = MATH_TOOL_DESCRIPTION
) -> FunctionTool:
    """A ``FunctionTool`` over the sympy math engine alone (exact answers, declines non-math input)."""
    math = engine or MathEngine()

    def solve(question: str) -> str:
        """Solve the math question."""
        answer = math.solve(question)
        if answer is None:
            return "Not a math question the math engine can solve."
        return answer.answer

    return FunctionTool.from_defaults(fn=solve, name=name, description=description)


__all__ = ["MATH_TOOL_DESCRIPTION", "ROUTER_TOOL_DESCRIPTION", "math_tool", "router_tool"]
