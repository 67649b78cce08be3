"""With the real SLM and the real ChatOllama fallback, both integrations give the same answer, name and usage."""

from __future__ import annotations

import pytest
from llama_index.core.base.llms.types import ChatMessage

from langchain_slm_router import ChatSLMRouter, SLMRouter
from llama_index_integration import SLMRouterLLM

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("escalate", [False, True])
def test_same_answer_name_and_usage_through_both_doors(slm, fallback_llm, escalate: bool) -> None:
    """Threshold 0 keeps the SLM's answer; threshold 1 escalates it (usage then counts the draft and the LLM)."""
    # no answer cache: both doors must run the pipeline (the second would be served from the cache)
    core = SLMRouter(slm=slm, fallback=fallback_llm, fallback_retries=0, answer_cache=None)
    question = "What is the capital of France?"
    lc = ChatSLMRouter(router=core, threshold=1.0 if escalate else 0.0)
    li = SLMRouterLLM(router=core, threshold=1.0 if escalate else 0.0)
    message = lc.invoke(question)
    response = li.chat([ChatMessage(role="user", content=question)])
    trace = response.raw
    assert message.content == response.message.content != ""
    assert message.response_metadata["stage"] == trace["stage"] == ("llm" if escalate else "slm")
    assert lc.model_name == li.metadata.model_name == core.display_name == \
        "slm-router:SmolLM2-135M-Instruct+nanoqa+ChatOllama(smollm2)"
    usage = message.usage_metadata
    assert (usage["input_tokens"], usage["output_tokens"], usage["total_tokens"]) == \
        (trace["usage"]["prompt_tokens"], trace["usage"]["completion_tokens"], trace["usage"]["total_tokens"])
    assert usage["total_tokens"] > 0
    if escalate:  # the SLM's draft and the fallback's answer are both counted, the same way
        assert trace["usage"]["slm_output_tokens"] > 0 and trace["usage"]["llm_output_tokens"] > 0
