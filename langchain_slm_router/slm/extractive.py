"""Extractive answers for context questions: find the context in a prompt, and let the SLM answer only with a
span of it (or the abstention phrase).

A small model asked a reading-comprehension question often paraphrases, runs on, or answers from its own memory.
When the prompt carries the passage the answer must come from, the answer can be constrained to a span of that
passage: the decoder may only choose tokens that continue some span, and stops at the end of one.

**How a context is detected** (:func:`find_context`): each message is matched against the layouts of the prompts
that carry one, most specific first (:data:`TEMPLATES`):

* ``squad``: the project's SQuAD prompt (:func:`~langchain_slm_router.evaluation.datasets.squad_prompt`):
  ``... Context: <context>`` then a blank line and ``Question: <question>``; abstention ``unanswerable``;
* ``llamaindex_qa``: LlamaIndex's default text-QA template (``DEFAULT_TEXT_QA_PROMPT`` and the user message of
  ``CHAT_TEXT_QA_PROMPT``): ``Context information is below.`` then the context between two ``-----`` rules, then
  ``Query: <question>`` and ``Answer:``;
* ``langchain_rag``: LangChain's stock RAG prompt (``rlm/rag-prompt``, the RAG tutorial's): ``Question:
  <question>`` then ``Context: <context>`` then ``Answer:``; abstention ``I don't know``;
* ``langchain_retrieval_qa``: LangChain's ``RetrievalQA`` / ``load_qa_chain`` "stuff" prompt: ``Use the following
  pieces of context to answer the question at the end. ...`` then the context, ``Question: <question>`` and
  ``Helpful Answer:``; abstention ``I don't know``;
* ``system_context``: LangChain's ``create_retrieval_chain`` pattern: a system message whose instructions end in
  ``Context: <context>``, with the question as the last user message; abstention ``I don't know`` when the
  instructions mention it.

A prompt that matches none is answered as usual. Detection is a pure function of the messages, so it costs
microseconds; it is switched on with ``LocalSLM(extractive=True)`` (off by default, see docs/benchmarks.md for the
measured effect).

**How the answer is constrained** (:class:`SpanTrie`, :class:`SpanConstraint`): the context is cut into pieces
(a word or a punctuation mark, with the white space before it, as byte-level BPE pre-tokenisers cut text); each
piece is tokenised with and without its leading space. A span starting at piece ``k`` is the tokens of piece
``k`` without its space followed by the tokens of the next pieces with theirs. Every span of up to
``max_tokens`` tokens from every start goes into a token trie, with an end mark after each whole piece; the
abstention phrase goes in too. A transformers ``LogitsProcessor`` walks the trie along the tokens generated so far
and leaves only the children of the current node (and end-of-sequence where a span may end) with finite scores;
at a node with no children only end-of-sequence remains. So the answer is always a span of the context or the
abstention, and greedy decoding picks the model's most likely one token by token. The reported token
probabilities stay the model's own (before the constraint), so the gate reads the same signal as without it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

_END = -1  # trie key marking "a span may end here"


@dataclass(frozen=True)
class ContextMatch:
    """A context found in a prompt."""

    template: str
    """Which layout matched (a name in :data:`TEMPLATES`)."""
    context: str
    """The passage the answer may be taken from."""
    question: str
    """The question asked about it."""
    abstention: str | None
    """The reply the template asks for when the context lacks the answer (``None``: the template names none)."""


_F = re.DOTALL
TEMPLATES: tuple[tuple[str, re.Pattern[str], str | None], ...] = (
    ("squad", re.compile(r"Context:[ \t]*(?P<context>.+?)\n[ \t]*\n[ \t]*Question:[ \t]*(?P<question>.+?)\s*$", _F),
     "unanswerable"),
    ("llamaindex_qa", re.compile(r"Context information is below\.\s*\n-{3,}\n(?P<context>.+?)\n-{3,}\n.*?"
                                 r"Query:[ \t]*(?P<question>.+?)\s*\nAnswer:\s*$", _F), None),
    ("langchain_rag", re.compile(r"Question:[ \t]*(?P<question>.+?)\s*\nContext:[ \t]*(?P<context>.+?)\s*\n"
                                 r"Answer:\s*$", _F), "I don't know"),
    ("langchain_retrieval_qa", re.compile(r"Use the following pieces of context to answer the question at the end\."
                                          r"[^\n]*\n\n(?P<context>.+?)\n\nQuestion:[ \t]*(?P<question>.+?)\s*\n"
                                          r"Helpful Answer:\s*$", _F), "I don't know"),
)
"""(name, pattern with ``context`` and ``question`` groups, abstention phrase), tried in this order."""
_SYSTEM_CONTEXT = re.compile(r"\bContext:[ \t]*\n?(?P<context>.+?)\s*$", _F)
_DONT_KNOW = re.compile(r"don'?t know", re.IGNORECASE)


def _text(message: Mapping[str, Any]) -> str:
    content = message.get("content", "")
    return content if isinstance(content, str) else ""


def find_context(messages: Sequence[Mapping[str, Any]]) -> ContextMatch | None:
    """The context and question of a prompt in one of the known layouts (see the module docstring), or ``None``."""
    for message in reversed(messages):
        if message.get("role") != "user":
            continue
        text = _text(message)
        for name, pattern, abstention in TEMPLATES:
            m = pattern.search(text)
            if m and m.group("context").strip():
                return ContextMatch(name, m.group("context").strip(), m.group("question").strip(), abstention)
        break  # only the last user message is the question
    users = [m for m in messages if m.get("role") == "user"]
    for message in messages:
        if message.get("role") == "system" and users:
            m = _SYSTEM_CONTEXT.search(_text(message))
            if m and m.group("context").strip():
                abstention = "I don't know" if _DONT_KNOW.search(_text(message)) else None
                return ContextMatch("system_context", m.group("context").strip(), _text(users[-1]).strip(),
                                    abstention)
    return None


_PIECES = re.compile(r"\s*(?:\w+|[^\w\s])")


class SpanTrie:
    """A token trie of every span of ``context`` (up to ``max_tokens`` tokens) and of the abstention phrase.

    Args:
        tokenizer: the SLM's tokenizer (a transformers tokenizer).
        context: the passage.
        abstention: the abstention phrase, or ``None``.
        max_tokens: the longest span, in tokens (the answer's token budget).
    """

    def __init__(self, tokenizer: Any, context: str, abstention: str | None, max_tokens: int) -> None:
        self.root: dict[int, Any] = {}
        self.max_tokens = max_tokens
        pieces = [p for p in _PIECES.findall(" ".join(context.split())) if p.strip()]
        cache: dict[str, list[int]] = {}

        def enc(text: str) -> list[int]:
            if text not in cache:
                cache[text] = list(tokenizer(text, add_special_tokens=False)["input_ids"])
            return cache[text]

        spaced = [enc(p) for p in pieces]
        bare = [enc(p.lstrip()) for p in pieces]
        for start in range(len(pieces)):
            node, used = self.root, 0
            for j in range(start, len(pieces)):
                toks = bare[j] if j == start else spaced[j]
                if used + len(toks) > max_tokens:
                    break
                for t in toks:
                    node = node.setdefault(t, {})
                used += len(toks)
                node[_END] = True
        if abstention:
            node = self.root
            for t in enc(abstention):
                node = node.setdefault(t, {})
            node[_END] = True

    def walk(self, tokens: Sequence[int]) -> dict[int, Any] | None:
        """The node reached by ``tokens`` from the root, or ``None`` when they leave the trie."""
        node = self.root
        for t in tokens:
            node = node.get(t)
            if node is None:
                return None
        return node

    def allowed(self, tokens: Sequence[int]) -> tuple[list[int], bool]:
        """(token ids that may follow ``tokens``, whether the answer may end here)."""
        node = self.walk(tokens)
        if node is None:
            return [], True
        return [t for t in node if t != _END], bool(node.get(_END))

    def contains(self, tokens: Sequence[int]) -> bool:
        """True when ``tokens`` is a whole span (or the abstention)."""
        node = self.walk(tokens)
        return bool(node and node.get(_END))


class SpanConstraint:
    """A transformers ``LogitsProcessor`` that keeps generation inside a :class:`SpanTrie` (one prompt).

    Args:
        trie: the spans allowed.
        prompt_length: the prompt's token count (generated tokens follow it in ``input_ids``).
        stop_ids: end-of-sequence token ids (allowed where a span may end, forced where none continues).
    """

    def __init__(self, trie: SpanTrie, prompt_length: int, stop_ids: Sequence[int]) -> None:
        self.trie, self.prompt_length = trie, prompt_length
        self.stop_ids = [t for t in stop_ids if t is not None]

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch

        mask = torch.full_like(scores, float("-inf"))
        for row in range(input_ids.shape[0]):
            generated = input_ids[row, self.prompt_length:].tolist()
            nxt, can_end = self.trie.allowed(generated)
            keep = list(nxt) + (self.stop_ids if can_end or not nxt else [])
            mask[row, keep] = 0.0
        return scores + mask


def generate_extractive(slm: Any, conversations: Sequence[Sequence[Mapping[str, Any]]],
                        early_exit: Any = None) -> list[Any]:
    """:meth:`LocalSLM.generate_batch` with span-constrained answers for the conversations that carry a context.

    Conversations without a context are answered as usual, in one batch; each one with a context is answered on
    its own with its :class:`SpanConstraint`.
    """
    from langchain_slm_router.errors import GenerationError, QueryTooLongError

    out: list[Any] = [None] * len(conversations)
    plain: list[tuple[int, tuple[list[int], bool]]] = []
    tok = slm.loaded.tokenizer
    for i, conv in enumerate(conversations):
        try:
            encoded = slm.encode(conv)
        except QueryTooLongError as exc:
            out[i] = exc
            continue
        match = find_context(conv)
        if match is None:
            plain.append((i, encoded))
            continue
        trie = SpanTrie(tok, match.context, match.abstention, slm.max_new_tokens)
        constraint = SpanConstraint(trie, len(encoded[0]), [tok.eos_token_id, tok.pad_token_id])
        try:
            out[i] = slm._generate_chunk([encoded], early_exit, logits_processors=[constraint])[0]
        except GenerationError as exc:  # in its slot, as generate_batch reports a failing prompt
            out[i] = exc
    if plain:
        for (i, _), gen in zip(plain, slm.generate_encoded([e for _, e in plain], early_exit)):
            out[i] = gen
    return out


__all__ = ["ContextMatch", "SpanConstraint", "SpanTrie", "TEMPLATES", "find_context", "generate_extractive"]
