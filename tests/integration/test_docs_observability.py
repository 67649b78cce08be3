"""Every ```python block of docs/observability.md, run in order in one namespace against the real SLM and the
Ollama-protocol test server as the fallback (``OLLAMA_HOST``/``FALLBACK_MODEL`` point there), then checked."""

from __future__ import annotations

import os

import pytest

pytestmark = pytest.mark.integration


def test_python_examples(ollama_base_url: str, slm, doc_examples) -> None:
    env = {"OLLAMA_HOST": ollama_base_url, "FALLBACK_MODEL": "smollm2"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        outputs = doc_examples.run("observability.md")
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    stats, price_error, integrations, spans = outputs
    assert stats.startswith("3 {") and "'math': 1" in stats and "'llm'" in stats
    assert "measured ChatOllama(smollm2) calls" in stats and "ESTIMATED always-LLM cost" in stats
    assert "invalid price table" in price_error and "price must be" in price_error
    assert integrations.splitlines() == ["42", "True"]
    assert spans.splitlines() == ["slm_router.math math", "slm_router.route math", "rag-chain None"]
