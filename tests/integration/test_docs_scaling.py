"""Every ```python block of docs/scaling.md runs, in order in one namespace, against the engine test server."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.integration


def test_every_example_runs(ollama_base_url: str, monkeypatch: pytest.MonkeyPatch, doc_examples) -> None:
    monkeypatch.setenv("OLLAMA_HOST", ollama_base_url)
    outputs = doc_examples.run("scaling.md")
    assert len(outputs) >= 2
    assert outputs[0].strip() == "slm-router:ChatOpenAI(local)+ChatOllama(mistral)"
    assert "Paris" in outputs[-1]
