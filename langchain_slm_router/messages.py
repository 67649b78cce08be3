"""Checking and converting what callers send: strings, bytes, LangChain messages, content blocks.

The router works on LangChain messages internally (the LlamaIndex integration converts to them). Text is
checked here once, before any stage runs:

* ``bytes`` must decode as UTF-8, else :class:`~langchain_slm_router.errors.InvalidQueryError`;
* control characters other than tab and newline, and lone surrogates, are removed;
* an empty or white-space query raises :class:`~langchain_slm_router.errors.EmptyQueryError`;
* a query over ``max_chars`` characters raises :class:`~langchain_slm_router.errors.QueryTooLongError`;
* content blocks: text blocks are joined; any non-text block (image, audio, file) makes the conversation
  *non-text*, which the local stages cannot read, so it goes to the fallback unchanged.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage

from langchain_slm_router.errors import EmptyQueryError, InvalidQueryError, QueryTooLongError

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_ROLES = {"human": "user", "ai": "assistant", "system": "system", "tool": "tool", "function": "tool"}


def clean_text(text: str | bytes, max_chars: int | None = None) -> str:
    """Return ``text`` decoded and stripped of control characters; raise a typed error for bad input."""
    if isinstance(text, (bytes, bytearray, memoryview)):
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidQueryError(
                f"The query is not valid UTF-8 (byte {exc.start}); decode it to text before routing."
            ) from exc
    if not isinstance(text, str):
        raise InvalidQueryError(f"The query must be text, got {type(text).__name__}.")
    text = text.encode("utf-8", "replace").decode("utf-8") if _has_surrogates(text) else text
    text = _CONTROL.sub(" ", unicodedata.normalize("NFC", text))
    if max_chars is not None and len(text) > max_chars:
        raise QueryTooLongError(
            f"The query has {len(text):,} characters; the router accepts at most {max_chars:,} "
            "(SLMRouter.max_query_chars)."
        )
    return text


def _has_surrogates(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def content_text(content: Any) -> tuple[str, bool]:
    """(text, is_text_only) of a message's content: a string or a list of content blocks."""
    if isinstance(content, (str, bytes, bytearray)):
        return clean_text(content), True
    if isinstance(content, Sequence):
        parts: list[str] = []
        text_only = True
        for block in content:
            if isinstance(block, str):
                parts.append(block)
            elif isinstance(block, dict) and block.get("type") in ("text", "text-plain") and "text" in block:
                parts.append(str(block["text"]))
            else:
                text_only = False
        return clean_text("\n".join(parts)), text_only
    raise InvalidQueryError(f"Message content must be text or content blocks, got {type(content).__name__}.")


class Conversation:
    """A checked conversation: the LangChain messages, their text, and what the local stages may do."""

    def __init__(self, messages: list[BaseMessage], max_chars: int | None = None) -> None:
        if not messages:
            raise EmptyQueryError("The query has no messages.")
        self.messages = messages
        self.dicts: list[dict[str, str]] = []
        self.text_only = True
        total = 0
        for msg in messages:
            text, text_only = content_text(msg.content)
            self.text_only &= text_only
            total += len(text)
            self.dicts.append({"role": _ROLES.get(msg.type, "user"), "content": text})
        if max_chars is not None and total > max_chars:
            raise QueryTooLongError(
                f"The conversation has {total:,} characters; the router accepts at most {max_chars:,} "
                "(SLMRouter.max_query_chars)."
            )
        last = messages[-1]
        if not isinstance(last, HumanMessage) and not (isinstance(last, BaseMessage) and last.type == "human"):
            self.question = ""
        else:
            self.question = self.dicts[-1]["content"].strip()
        if not any(d["content"].strip() for d in self.dicts) and self.text_only:
            raise EmptyQueryError("The query is empty.")
        self.has_tool_messages = any(isinstance(m, ToolMessage) or _has_tool_calls(m) for m in messages)

    @property
    def local_ok(self) -> bool:
        """Whether the local stages can read this conversation (text only, no tool traffic, ends with a user)."""
        return self.text_only and not self.has_tool_messages and bool(self.question)


def _has_tool_calls(msg: BaseMessage) -> bool:
    return isinstance(msg, AIMessage) and bool(msg.tool_calls)


def to_messages(query: Any) -> list[BaseMessage]:
    """Coerce a string, bytes, a message, or a list of messages / (role, text) pairs to LangChain messages."""
    if isinstance(query, (str, bytes, bytearray)):
        return [HumanMessage(content=clean_text(query))]
    if isinstance(query, BaseMessage):
        return [query]
    if isinstance(query, Sequence):
        from langchain_core.messages import convert_to_messages

        try:
            return list(convert_to_messages(query))
        except (ValueError, TypeError, NotImplementedError) as exc:
            raise InvalidQueryError(f"Cannot read the query as chat messages: {exc}") from exc
    if hasattr(query, "to_messages"):  # a PromptValue
        return list(query.to_messages())
    raise InvalidQueryError(f"The query must be text or chat messages, got {type(query).__name__}.")


__all__ = ["Conversation", "clean_text", "content_text", "to_messages"]
