"""Every ```python block of docs/scaling.md runs, in order in one namespace, against the engine test server."""

from __future__ import annotations

import contextlib
import io
import os
import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

DOC = Path(__file__).resolve().parents[2] / "docs" / "scaling.md"
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def test_every_example_runs(ollama_base_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OLLAMA_HOST", ollama_base_url)
    blocks = BLOCK.findall(DOC.read_text(encoding="utf-8"))
    assert len(blocks) >= 2
    ns: dict[str, object] = {"__name__": "docs_scaling"}
    outputs = []
    for i, code in enumerate(blocks):
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            exec(compile(code, f"{DOC.name}[block {i}]", "exec"), ns)  # noqa: S102 - our own docs
        outputs.append(buf.getvalue())
    assert outputs[0].strip() == "slm-router:ChatOpenAI(local)+ChatOllama(mistral)"
    assert "Paris" in outputs[-1]
