"""Input checks and message conversion (pure logic, no model)."""

from __future__ import annotations

import pytest
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage

from langchain_slm_router.errors import EmptyQueryError, InvalidQueryError, QueryTooLongError
from langchain_slm_router.messages import Conversation, clean_text, to_messages


def test_clean_text_decodes_and_strips_control_characters() -> None:
    assert clean_text(b"caf\xc3\xa9\x00?") == "café ?"
    assert clean_text("a\tb\nc\x07") == "a\tb\nc "


def test_non_utf8_bytes_raise_typed_error() -> None:
    with pytest.raises(InvalidQueryError, match="UTF-8"):
        clean_text(b"\xff\xfe\xfa")


def test_lone_surrogates_are_replaced() -> None:
    assert "?" in clean_text("x\ud800y")


def test_too_long_raises() -> None:
    with pytest.raises(QueryTooLongError):
        Conversation(to_messages("x" * 101), max_chars=100)


@pytest.mark.parametrize("query", ["", "   \n\t ", [HumanMessage(content="  ")], []])
def test_empty_queries_raise(query: object) -> None:
    with pytest.raises(EmptyQueryError):
        Conversation(to_messages(query))


def test_non_text_query_type_raises() -> None:
    with pytest.raises(InvalidQueryError):
        to_messages(12345)


def test_roles_and_history_are_kept() -> None:
    conv = Conversation([SystemMessage("Be brief."), HumanMessage("Hi"), AIMessage("Hello"), HumanMessage("2+2?")])
    assert [d["role"] for d in conv.dicts] == ["system", "user", "assistant", "user"]
    assert conv.question == "2+2?" and conv.local_ok


def test_image_blocks_and_tool_traffic_go_to_the_fallback() -> None:
    img = HumanMessage(content=[{"type": "text", "text": "What is this?"},
                                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}])
    conv = Conversation([img])
    assert conv.question == "What is this?" and not conv.text_only and not conv.local_ok
    tools = Conversation([HumanMessage("weather?"),
                          AIMessage("", tool_calls=[{"name": "w", "args": {}, "id": "1"}]),
                          ToolMessage("sunny", tool_call_id="1"), HumanMessage("and tomorrow?")])
    assert not tools.local_ok


def test_text_blocks_are_joined() -> None:
    conv = Conversation([HumanMessage(content=[{"type": "text", "text": "What is"}, {"type": "text", "text": "2+2?"}])])
    assert conv.question == "What is\n2+2?" and conv.local_ok
