"""Extractive answers: context detection on real prompt templates, and span-constrained decoding with the real SLM."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from langchain_slm_router.evaluation.datasets import squad_prompt
from langchain_slm_router.slm import LocalSLM
from langchain_slm_router.slm.extractive import SpanTrie, find_context

CONTEXT = ("The Normans were the people who in the 10th and 11th centuries gave their name to Normandy, a region in "
           "France. They were descended from Norse raiders and pirates from Denmark, Iceland and Norway who, under "
           "their leader Rollo, agreed to swear fealty to King Charles III of West Francia.")
QUESTION = "Who was the leader of the Norse raiders?"

# LangChain's stock RAG prompt (`rlm/rag-prompt`, used by LangChain's RAG tutorial), verbatim.
LANGCHAIN_RAG = ("You are an assistant for question-answering tasks. Use the following pieces of retrieved context to "
                 "answer the question. If you don't know the answer, just say that you don't know. Use three "
                 "sentences maximum and keep the answer concise.\nQuestion: {question} \nContext: {context} \n"
                 "Answer:")
# LangChain's RetrievalQA / load_qa_chain "stuff" prompt, verbatim.
LANGCHAIN_RETRIEVAL_QA = ("Use the following pieces of context to answer the question at the end. If you don't know "
                          "the answer, just say that you don't know, don't try to make up an answer.\n\n{context}\n\n"
                          "Question: {question}\nHelpful Answer:")
# create_retrieval_chain's documented system prompt.
LANGCHAIN_SYSTEM = ("Use the given context to answer the question. If you don't know the answer, say you don't know. "
                    "Use three sentence maximum and keep the answer concise. Context: {context}")


def _lc_messages(template: list[tuple[str, str]]) -> list[dict[str, str]]:
    from langchain_core.prompts import ChatPromptTemplate

    from langchain_slm_router.messages import Conversation

    messages = ChatPromptTemplate.from_messages(template).format_messages(context=CONTEXT, question=QUESTION)
    return Conversation(messages).dicts  # the dicts the router hands the SLM


@pytest.mark.parametrize("template, name, abstention", [
    ([("human", LANGCHAIN_RAG)], "langchain_rag", "I don't know"),
    ([("human", LANGCHAIN_RETRIEVAL_QA)], "langchain_retrieval_qa", "I don't know"),
    ([("system", LANGCHAIN_SYSTEM), ("human", "{question}")], "system_context", "I don't know"),
])
def test_detects_langchain_rag_prompts(template, name, abstention) -> None:
    found = find_context(_lc_messages(template))
    assert found is not None and found.template == name
    assert found.context == CONTEXT and found.question == QUESTION and found.abstention == abstention


def test_detects_llamaindex_default_qa_templates() -> None:
    from llama_index.core.prompts.chat_prompts import CHAT_TEXT_QA_PROMPT
    from llama_index.core.prompts.default_prompts import DEFAULT_TEXT_QA_PROMPT

    text = DEFAULT_TEXT_QA_PROMPT.format(context_str=CONTEXT, query_str=QUESTION)
    chat = [{"role": m.role.value, "content": m.content}
            for m in CHAT_TEXT_QA_PROMPT.format_messages(context_str=CONTEXT, query_str=QUESTION)]
    for messages in ([{"role": "user", "content": text}], chat):
        found = find_context(messages)
        assert found is not None and found.template == "llamaindex_qa"
        assert found.context == CONTEXT and found.question == QUESTION


def test_detects_the_projects_squad_prompt_and_nothing_in_plain_questions() -> None:
    found = find_context([{"role": "user", "content": squad_prompt(CONTEXT, QUESTION)}])
    assert found is not None and (found.template, found.context, found.question, found.abstention) == \
        ("squad", CONTEXT, QUESTION, "unanswerable")
    for plain in ("What is the capital of France?", "Question: who wrote Hamlet?", "Context: none here"):
        assert find_context([{"role": "user", "content": plain}]) is None


@pytest.fixture(scope="module")
def extractive(slm: LocalSLM) -> LocalSLM:
    return slm.model_copy(update={"extractive": True, "max_new_tokens": 16})


def _normal(text: str) -> str:
    return " ".join(text.split())


@pytest.mark.integration
def test_constrained_answers_are_spans_of_the_context_or_the_abstention(extractive: LocalSLM, data_dir) -> None:
    from langchain_slm_router.evaluation.datasets import load_squad_v2

    items = load_squad_v2(data_dir, 6)
    gens = extractive.generate_batch([[{"role": "user", "content": it.prompt}] for it in items])
    for it, gen in zip(items, gens):
        context = find_context([{"role": "user", "content": it.prompt}]).context
        assert gen.text and (gen.text == "unanswerable" or _normal(gen.text) in _normal(context)), gen.text
        trie = SpanTrie(extractive.loaded.tokenizer, context, "unanswerable", 16)
        assert trie.contains(gen.token_ids)  # the emitted tokens end exactly at the end of a span
        assert all(0.0 < p <= 1.0 for p in gen.token_probs)
    # a question without a context is answered as before
    plain = [{"role": "user", "content": "What is the capital of France?"}]
    assert extractive.generate(plain).text == extractive.model_copy(update={"extractive": False}).generate(plain).text


@pytest.mark.integration
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(words=st.lists(st.sampled_from(["alpha", "Beta", "42", "river,", "(north)", "1,200", "don't", "café", "x-ray",
                                       "the", "end."]), min_size=3, max_size=14),
       question=st.sampled_from(["What is it?", "Which river?", "How many?"]))
def test_any_context_gives_only_spans_or_the_abstention(extractive: LocalSLM, words, question) -> None:
    context = " ".join(words)
    gen = extractive.generate([{"role": "user", "content": squad_prompt(context, question)}])
    assert gen.text == "unanswerable" or (gen.text and _normal(gen.text) in _normal(context)), (context, gen.text)
