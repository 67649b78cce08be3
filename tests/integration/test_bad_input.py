"""Bad input at the router's front door: each gets a typed error or a documented answer, fast, never a crash."""

from __future__ import annotations

import time

import pytest
from langchain_core.messages import AIMessage, HumanMessage

from langchain_slm_router import SLMRouter
from langchain_slm_router.errors import (
    EmptyQueryError,
    FallbackUnavailableError,
    InvalidQueryError,
    QueryTooLongError,
    SLMRouterError,
)

pytestmark = pytest.mark.integration

PNG_1PX = ("data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGA"
           "WjR9awAAAABJRU5ErkJggg==")


@pytest.fixture(scope="module")
def math_only() -> SLMRouter:
    """Math engine alone: whatever it declines ends in a typed FallbackUnavailableError, nothing else runs."""
    return SLMRouter(slm=None, fallback=None)


@pytest.mark.parametrize("query", ["", "   \n\t  ", [], [HumanMessage("")], [HumanMessage("  ")], b"", "\x00\x01\x02"])
def test_empty_queries_raise_empty_query_error(math_only, query) -> None:
    with pytest.raises(EmptyQueryError):
        math_only.route(query)


@pytest.mark.parametrize("query", [None, 12345, 3.5, object(), {"not": "messages"}, [object()]])
def test_non_text_queries_raise_invalid_query_error(math_only, query) -> None:
    with pytest.raises(InvalidQueryError):
        math_only.route(query)


def test_non_utf8_bytes_are_rejected_and_utf8_bytes_are_read(math_only) -> None:
    with pytest.raises(InvalidQueryError, match="UTF-8"):
        math_only.route(b"What is \xff\xfe 2 + 2?")
    assert math_only.route("What is 2 + 2?".encode()).answer == "4"


def test_control_characters_are_removed_before_routing(math_only) -> None:
    result = math_only.route("What is\x00 6 *\x07 7?\x1b")
    assert result.stage == "math" and result.answer == "42"


def test_huge_query_is_rejected_fast(math_only) -> None:
    start = time.perf_counter()
    with pytest.raises(QueryTooLongError, match="max_query_chars"):
        math_only.route("What is 1 + 1? " * 5_000)
    with pytest.raises(QueryTooLongError):
        math_only.route("1+" * 500_000 + "1")
    assert time.perf_counter() - start < 10.0  # rejected on length before any parsing; a bound only a hang breaks


ABUSE = [
    "__import__('os').system('touch {sentinel}')",
    "What is __import__('os').system('touch {sentinel}')?",
    "eval(\"open('{sentinel}', 'w')\")",
    "exec('import os; os.system(\"touch {sentinel}\")')",
    "lambda: open('{sentinel}', 'w')",
    "().__class__.__bases__[0].__subclasses__()",
    "x.__globals__['os'].system('touch {sentinel}')",
    "solve Symbol('x').__class__ = 1",
    "What is 2^2^2^2^2^2?",
    "What is 9**9**9**9?",
    "factorial(10^9)",
    "What is 100000000!?",
    "simplify " + "(" * 3000 + "x" + ")" * 3000,
    "integrate " + "sin(" * 400 + "x" + ")" * 400,
    "What is " + "9" * 20_000 + " * " + "9" * 10_000 + "?",
]


@pytest.mark.parametrize("template", ABUSE)
def test_math_abuse_is_answered_or_declined_within_bounds_and_runs_nothing(math_only, tmp_path, template) -> None:
    sentinel = tmp_path / "pwned"
    query = template.format(sentinel=sentinel)
    start = time.perf_counter()
    try:
        result = math_only.route(query)
    except (FallbackUnavailableError, QueryTooLongError):
        pass  # declined by the math engine; no SLM or fallback here -> the typed "nothing can answer" error
    else:
        assert result.stage == "math" and result.answer
    assert time.perf_counter() - start < 30.0  # bounded by the engine's own limits; only a hang breaks this
    assert not sentinel.exists()


def test_text_content_blocks_are_read_as_text(math_only) -> None:
    msg = HumanMessage(content=[{"type": "text", "text": "What is"}, {"type": "text", "text": "6 * 7?"}])
    assert math_only.route([msg]).answer == "42"


def test_image_content_goes_to_the_fallback(slm, fallback_llm) -> None:
    router = SLMRouter(slm=slm, fallback=fallback_llm)
    msg = HumanMessage(content=[{"type": "text", "text": "Describe this picture in one word."},
                                {"type": "image_url", "image_url": {"url": PNG_1PX}}])
    result = router.route([msg])
    assert result.stage == "llm" and result.signals is None and "cannot read" in result.reason
    assert result.answer.strip()


def test_conversation_ending_with_the_assistant_goes_to_the_fallback(slm, fallback_llm) -> None:
    router = SLMRouter(slm=slm, fallback=fallback_llm)
    result = router.route([HumanMessage("Say hi."), AIMessage("Hi")])
    assert result.stage == "llm"


def test_every_error_is_a_router_error(math_only) -> None:
    for query in ["", b"\xff", 3, "x" * 40_000]:
        with pytest.raises(SLMRouterError):
            math_only.route(query)
