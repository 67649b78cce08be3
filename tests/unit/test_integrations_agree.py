"""The LangChain chat model and the LlamaIndex LLM say the same thing: name, construction, usage, tools.

No model is loaded here: the SLM is configured but never run (queries go to the math engine, or straight to a
small scripted fallback that reports token usage, which only stands in for "a fallback chat model").
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import pytest
from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_ollama import ChatOllama
from pydantic import ValidationError

from langchain_slm_router import ChatSLMRouter, Gate, GateDecision, GatePolicy, SLMRouter
from langchain_slm_router.slm import SLMGeneration
from langchain_slm_router.tool_specs import (
    MATH_TOOL_DESCRIPTION,
    MATH_TOOL_NAME,
    ROUTER_TOOL_DESCRIPTION,
    ROUTER_TOOL_NAME,
)
from langchain_slm_router.tools import make_math_tool, make_router_tool
from langchain_slm_router.trace import RouteResult
from llama_index_integration import SLMRouterLLM, math_tool, router_tool

CLOSED = "http://127.0.0.1:9"  # nothing listens; construction never contacts the server


class _UsageFake(BaseChatModel):
    """A fallback that answers "ok" and reports 11 prompt and 2 answer tokens."""

    model: str = "usage-fake"

    @property
    def _llm_type(self) -> str:
        return "usage-fake"

    def _generate(self, messages: list[BaseMessage], stop: Any = None,
                  run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> ChatResult:
        msg = AIMessage(content="ok", usage_metadata={"input_tokens": 11, "output_tokens": 2, "total_tokens": 13})
        return ChatResult(generations=[ChatGeneration(message=msg)])


class ShareGate(Gate):
    """A gate that is not a GatePolicy: keep when at least ``min_share`` of the tokens had probability >= 0.5."""

    gate_name: ClassVar[str] = "test-share"
    min_share: float = 0.5

    def decide(self, generation: SLMGeneration, messages: Sequence[Any] = ()) -> GateDecision:
        probs = generation.token_probs
        share = sum(p >= 0.5 for p in probs) / max(1, len(probs))
        return GateDecision(keep=share >= self.min_share, reasons=[f"share {share:.2f} >= {self.min_share}"])

    @property
    def threshold(self) -> float | None:
        return self.min_share

    def with_threshold(self, threshold: float) -> ShareGate:
        return self.model_copy(update={"min_share": float(threshold)})


OPTIONS = {"threshold": 0.8, "max_tokens": 16, "temperature": 0.0, "overflow": "truncate", "max_retries": 4,
           "on_fallback_error": "return_slm", "max_query_chars": 900}


def _core(router: SLMRouter) -> tuple[Any, ...]:
    return (router.gate, router.slm, router.fallback_retries, router.on_fallback_error, router.max_query_chars,
            router.fallback)


def test_both_report_the_routers_display_name() -> None:
    fallback = ChatOllama(model="mistral", base_url=CLOSED)
    core = SLMRouter(fallback=fallback)
    chat, li = ChatSLMRouter(router=core), SLMRouterLLM(router=core)
    assert chat.model_name == li.metadata.model_name == li.model_name == core.display_name
    assert core.display_name == "slm-router:SmolLM2-135M-Instruct+nanoqa+ChatOllama(mistral)"
    assert SLMRouterLLM(fallback=None, slm=None).model_name == ChatSLMRouter(fallback=None, slm=None).model_name \
        == "slm-router:no-slm+no-fallback"


def test_the_same_arguments_build_the_same_router() -> None:
    fallback = ChatOllama(model="mistral", base_url=CLOSED)
    chat = ChatSLMRouter(fallback=fallback, **OPTIONS)
    li = SLMRouterLLM(fallback=fallback, **OPTIONS)
    assert _core(chat.router) == _core(li.router)
    assert chat.router.gate.threshold == 0.8 and chat.router.slm.max_new_tokens == 16
    assert chat.router.slm.overflow == "truncate" and chat.router.fallback_retries == 4
    # router= plus fields: the fields are applied to that router, the same way in both
    base = SLMRouter(gate=GatePolicy(min_mean_prob=0.3, max_mean_entropy=2.0), fallback=None)
    chat, li = ChatSLMRouter(router=base, threshold=0.9), SLMRouterLLM(router=base, threshold=0.9)
    assert _core(chat.router) == _core(li.router)
    assert li.router.gate == GatePolicy(min_mean_prob=0.9, max_mean_entropy=2.0) and li.router.fallback is None
    assert SLMRouterLLM(router=base).router is base  # nothing to apply: the router itself


def test_any_gate_works_in_both() -> None:
    gate = ShareGate(min_share=0.5)
    chat = ChatSLMRouter(gate=gate, threshold=0.9, fallback=None)
    li = SLMRouterLLM(gate=gate, threshold=0.9, fallback=None)
    assert chat.router.gate == li.router.gate == ShareGate(min_share=0.9)
    assert chat.gate == gate  # the gate before the threshold
    assert chat._identifying_params["threshold"] == 0.9
    assert chat.model_copy(update={"threshold": 0.7}).router.gate == ShareGate(min_share=0.7)


def test_both_report_the_route_results_token_totals() -> None:
    core = SLMRouter(slm=None, fallback=_UsageFake(), answer_cache=None)  # both ask the fallback (no cache hit)
    message = ChatSLMRouter(router=core).invoke("Who wrote Hamlet?")
    response = SLMRouterLLM(router=core).complete("Who wrote Hamlet?")
    usage = response.raw["usage"]
    assert message.usage_metadata["input_tokens"] == usage["prompt_tokens"] == 11
    assert message.usage_metadata["output_tokens"] == usage["completion_tokens"] == 2
    assert message.usage_metadata["total_tokens"] == usage["total_tokens"] == 13
    result = RouteResult(answer="Paris", stage="llm", reason="escalated", usage={
        "slm_input_tokens": 30, "slm_output_tokens": 5, "llm_input_tokens": 28, "llm_output_tokens": 3})
    assert (result.input_tokens, result.output_tokens, result.total_tokens) == (58, 8, 66)


def test_routing_fields_cannot_be_changed_silently() -> None:
    llm = ChatSLMRouter(fallback=ChatOllama(model="mistral", base_url=CLOSED), threshold=0.7)
    for name, value in (("threshold", 0.9), ("gate", GatePolicy(min_mean_prob=0.2)), ("fallback", None),
                        ("max_tokens", 8), ("router", SLMRouter(fallback=None))):
        with pytest.raises(ValidationError, match="frozen"):
            setattr(llm, name, value)
    assert llm.router.gate.threshold == 0.7
    copy = llm.model_copy(update={"threshold": 0.9, "max_tokens": 8})
    assert copy.router.gate.threshold == 0.9 and copy.router.slm.max_new_tokens == 8
    assert copy.router.fallback is llm.router.fallback and llm.router.gate.threshold == 0.7
    llm.stop = ["\n"]  # call-time settings stay editable: they apply on the next call
    assert llm.stop == ["\n"]


def test_both_integrations_have_the_same_tools() -> None:
    core = SLMRouter(fallback=None)
    lc_math, li_math = make_math_tool(), math_tool()
    lc_router, li_router = make_router_tool(core), router_tool(core)
    assert lc_math.name == li_math.metadata.name == MATH_TOOL_NAME
    assert lc_router.name == li_router.metadata.name == ROUTER_TOOL_NAME
    assert lc_math.description == li_math.metadata.description == MATH_TOOL_DESCRIPTION
    assert lc_router.description == li_router.metadata.description == ROUTER_TOOL_DESCRIPTION
    for lc, li in ((lc_math, li_math), (lc_router, li_router)):
        li_args = li.metadata.get_parameters_dict()["properties"]
        assert list(lc.args) == list(li_args) == ["question"]
        assert lc.args["question"]["description"] == li_args["question"]["description"] != ""
    for question in ("What is 17 * 23 + 4?", "the square root of 144", "Who wrote Hamlet?"):
        assert lc_math.invoke({"question": question}) == li_math.call(question=question).content
    declined = li_math.call(question="Who wrote Hamlet?").content
    assert declined.startswith("Not solved: the input is not math this calculator can solve exactly (")
    assert lc_router.invoke({"question": "What is 2^10?"}) == li_router.call(question="What is 2^10?").content \
        == "1024"
