"""LangChain's standard integration suite for ChatSLMRouter: real SmolLM2, real sympy, real ChatOllama client.

The fallback is ``ChatOllama`` talking to the Ollama-protocol test server (``ollama_base_url`` fixture), which
answers with the real SmolLM2-135M-Instruct. Answers are kept short (16 new tokens) to keep the suite fast.
"""

from __future__ import annotations

import pytest
from langchain_ollama import ChatOllama
from langchain_tests.integration_tests import ChatModelIntegrationTests

from langchain_slm_router import ChatSLMRouter

pytestmark = pytest.mark.integration

MAX_TOKENS = 16


class TestChatSLMRouterIntegration(ChatModelIntegrationTests):
    base_url: str = ""

    @pytest.fixture(autouse=True)
    def _server(self, ollama_base_url: str) -> None:
        type(self).base_url = ollama_base_url

    @property
    def chat_model_class(self) -> type[ChatSLMRouter]:
        return ChatSLMRouter

    @property
    def chat_model_params(self) -> dict:
        fallback = ChatOllama(model="smollm2", base_url=self.base_url, num_predict=MAX_TOKENS, temperature=0)
        return {"fallback": fallback, "max_tokens": MAX_TOKENS, "temperature": 0}

    @property
    def standard_chat_model_params(self) -> dict:
        # LangChain's standard parameters; max_tokens is lowered by chat_model_params (speed), and the SLM is
        # greedy (temperature 0). timeout has no meaning for a local model; max_retries maps to fallback_retries.
        return {"temperature": 0, "max_tokens": MAX_TOKENS, "timeout": 60, "stop": [], "max_retries": 2}

    # Skipped features, each justified (the standard tests these properties turn off are skipped):
    @property
    def has_tool_calling(self) -> bool:
        # Tool calls are delegated to the fallback (see ChatSLMRouter.bind_tools). The offline fallback used here,
        # SmolLM2-135M through the Ollama-protocol test server, cannot produce tool calls (the server, like the
        # model, has no tool support), so the tool-calling standard tests would test the fallback, not the router.
        # Routing of tool requests to the fallback, with tool_calls preserved, is tested in
        # tests/unit/test_chat_model_standard.py and tests/integration/test_chat_model.py.
        return False

    @property
    def has_structured_output(self) -> bool:
        # Structured output is the fallback's with_structured_output behind the router; SmolLM2-135M cannot
        # reliably produce JSON for a schema, so these tests would only measure the 135M fallback.
        return False

    @property
    def supports_json_mode(self) -> bool:
        return False  # same reason as structured output

    @property
    def supports_model_override(self) -> bool:
        # The router is a pipeline of models (sympy, the SLM, the fallback); a per-call `model=` name cannot
        # say which one to replace, so it is not supported (it is reported in tracing params only).
        return False

    @property
    def supports_image_inputs(self) -> bool:
        return False  # images go to the fallback, and the test fallback (SmolLM2-135M) has no vision

    @property
    def supports_pdf_inputs(self) -> bool:
        return False  # files go to the fallback; the test fallback reads text only

    @property
    def supports_audio_inputs(self) -> bool:
        return False  # same: audio goes to the fallback, which reads text only here

    @property
    def supports_image_tool_message(self) -> bool:
        return False  # tool traffic goes to the fallback, which has neither tools nor vision here

    @property
    def supports_pdf_tool_message(self) -> bool:
        return False  # as above

    @property
    def supports_anthropic_inputs(self) -> bool:
        return False  # Anthropic-format content blocks (tool_use, images) need a tool-calling, multimodal fallback

    @property
    def enable_vcr_tests(self) -> bool:
        # test_stream_time replays recorded HTTP cassettes to time streaming overhead; the router's first stages
        # run in-process (nothing to record), and speed claims belong to benchmarks/, not tests.
        return False

    @property
    def returns_usage_metadata(self) -> bool:
        return True  # tokens of every model that ran (SLM draft + fallback)
