"""Rules both HTTP protocols share are computed in one place: the ``length`` finish reason."""

from __future__ import annotations

import time

from langchain_core.messages import AIMessage

from langchain_slm_router import SLMRouter
from langchain_slm_router.server import ollama_api
from langchain_slm_router.server.service import finish_reason
from langchain_slm_router.trace import RouteResult


def test_a_fallback_answer_cut_by_its_token_bound_is_length_in_both_protocols() -> None:
    router = SLMRouter(slm=None, fallback=None)
    cut = RouteResult(answer="a long", stage="llm", reason="escalated", fallback_tried=True,
                      llm_message=AIMessage(content="a long", response_metadata={"done_reason": "length"}))
    ended = RouteResult(answer="done", stage="llm", reason="escalated", fallback_tried=True,
                        llm_message=AIMessage(content="done", response_metadata={"finish_reason": "stop"}))
    assert finish_reason(cut, router, stopped=False) == "length"  # OpenAI's finish_reason
    assert ollama_api._stats(cut, time.perf_counter(), False, router)["done_reason"] == "length"  # Ollama's
    assert finish_reason(ended, router, stopped=False) == "stop"
    assert ollama_api._stats(ended, time.perf_counter(), False, router)["done_reason"] == "stop"
    assert finish_reason(cut, router, stopped=True) == "stop"  # a stop sequence cut it first
