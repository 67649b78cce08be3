"""Routing logic with a scripted SLM: keep, escalate, overflow, no fallback, batches with errors. No model loads.

The SLM here is a small :class:`SLMBackend` that returns preset generations (the stage-2 protocol makes that
possible); the fallback is LangChain's own scripted chat model. Only the router's decisions are under test.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
from langchain_core.language_models.fake_chat_models import FakeListChatModel
from langchain_core.messages import AIMessage
from langchain_core.runnables import RunnableLambda

from langchain_slm_router.errors import (
    EmptyQueryError,
    FallbackUnavailableError,
    QueryTooLongError,
    SLMUnavailableError,
)
from langchain_slm_router.gates import GatePolicy
from langchain_slm_router.router import SLMRouter
from langchain_slm_router.signals import ConfidenceSignals
from langchain_slm_router.slm import ChatMessageDict, EarlyExit, SLMBackend, SLMGeneration


def generation(text: str, probs: Sequence[float], finished: bool = True) -> SLMGeneration:
    ents = [0.1] * len(probs)
    return SLMGeneration(text=text, token_probs=list(probs), token_entropies=ents,
                         signals=ConfidenceSignals.from_tokens(probs, ents), input_tokens=10,
                         output_tokens=len(probs), finished=finished, latency_ms=1.0)


SURE = generation("Paris", [0.95, 0.9])
UNSURE = generation("Lyon, maybe", [0.3, 0.2, 0.4])


class ScriptedSLM(SLMBackend):
    """Answers each conversation's last message from ``script``; prompts count one token per word."""

    script: dict[str, Any]
    calls: list[int] = []

    @property
    def model_name(self) -> str:
        return "scripted"

    def count_tokens(self, messages: Sequence[ChatMessageDict]) -> int:
        return sum(len(m["content"].split()) for m in self.with_system(messages))

    def generate_batch(self, conversations: Sequence[Sequence[ChatMessageDict]], *,
                       early_exit: EarlyExit | None = None) -> list[SLMGeneration | Exception]:
        self.calls.append(len(conversations))
        out: list[SLMGeneration | Exception] = []
        for conv in conversations:
            if self.count_tokens(conv) > self.max_input_tokens and self.overflow != "truncate":
                out.append(QueryTooLongError(f"{self.count_tokens(conv)} tokens > {self.max_input_tokens}"))
            else:
                out.append(self.script[conv[-1]["content"].strip()])
        return out


LONG = "word " * 40
SCRIPT = {"sure?": SURE, "unsure?": UNSURE, LONG.strip(): SURE, "engine down?": SLMUnavailableError("engine down")}


def make_router(fallback: Any = "default", overflow: str = "escalate", **kwargs: Any) -> SLMRouter:
    slm = ScriptedSLM(script=SCRIPT, max_input_tokens=30, overflow=overflow, calls=[])
    if fallback == "default":
        fallback = FakeListChatModel(responses=["from the LLM"] * 20)
    return SLMRouter(slm=slm, gate=GatePolicy(min_mean_prob=0.6), fallback=fallback, math_engine=None,
                     fallback_retries=0, **kwargs)


def test_a_confident_answer_is_kept() -> None:
    result = make_router().route("sure?")
    assert result.stage == "slm" and result.answer == "Paris" and not result.fallback_tried
    assert result.signals == SURE.signals and result.threshold == 0.6 and result.slm_model == "scripted"


def test_an_unsure_answer_is_escalated_with_the_draft_in_the_trace() -> None:
    result = make_router().route("unsure?")
    assert result.stage == "llm" and result.answer == "from the LLM" and result.fallback_tried
    assert result.slm_answer == "Lyon, maybe" and result.reason == "the gate escalated the SLM answer"


@pytest.mark.parametrize("overflow", ["escalate", "truncate"])
def test_overflow_escalate_goes_to_the_fallback_truncate_answers_locally(overflow: str) -> None:
    result = make_router(overflow=overflow).route(LONG)
    if overflow == "escalate":
        assert result.stage == "llm" and result.slm_answer is None and "sent to the fallback" in result.reason
    else:
        assert result.stage == "slm" and result.answer == "Paris"


async def test_overflow_error_is_raised_to_the_caller() -> None:
    router = make_router(overflow="error")
    with pytest.raises(QueryTooLongError):
        router.route(LONG)
    with pytest.raises(QueryTooLongError):
        await router.aroute(LONG)
    assert isinstance(router.route_batch([LONG, "sure?"], return_exceptions=True)[0], QueryTooLongError)


def test_no_fallback_returns_the_draft_marked_low_confidence_or_a_typed_error() -> None:
    router = make_router(fallback=None)
    result = router.route("unsure?")
    assert result.stage == "slm" and result.low_confidence and result.answer == "Lyon, maybe"
    assert router.route("sure?").low_confidence is False
    with pytest.raises(FallbackUnavailableError, match="No fallback is configured"):
        router.route(LONG)  # escalated by the overflow rule, and nothing to escalate to


def test_an_engine_error_escalates_that_query_alone() -> None:
    results = make_router().route_batch(["engine down?", "sure?"])
    assert results[0].stage == "llm" and "engine down" in results[0].reason
    assert results[1].stage == "slm"


async def test_batch_with_errors_keeps_order_and_fails_each_query_alone() -> None:
    router = make_router(answer_cache=None)  # the same queries twice: both runs must reach the stages
    queries = ["sure?", "unsure?", LONG, "   ", "engine down?"]
    for results in (router.route_batch(queries, return_exceptions=True),
                    await router.aroute_batch(queries, return_exceptions=True)):
        assert [getattr(r, "stage", None) for r in results] == ["slm", "llm", "llm", None, "llm"]
        assert isinstance(results[3], EmptyQueryError)
    assert router.slm.calls == [4, 4]  # one SLM batch per route_batch, the empty query never reached it
    with pytest.raises(EmptyQueryError):
        router.route_batch(queries)


def test_a_failing_fallback_is_typed_or_degrades_to_the_draft() -> None:
    def refuse(_: Any) -> AIMessage:
        raise ConnectionError("connection refused")

    with pytest.raises(FallbackUnavailableError):
        make_router(fallback=RunnableLambda(refuse)).route("unsure?")
    result = make_router(fallback=RunnableLambda(refuse), on_fallback_error="return_slm").route("unsure?")
    assert result.stage == "slm" and result.low_confidence and result.fallback_error
