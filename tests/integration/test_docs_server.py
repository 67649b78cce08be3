"""Every example of docs/server.md, run against a server started here: the ```python blocks in order in one
namespace, the ```bash block that uses curl, and the JSON configuration, which must be a valid config file."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator

import pytest

from langchain_slm_router.router import SLMRouter
from langchain_slm_router.server import RouterServer, ServeConfig

pytestmark = pytest.mark.integration

@pytest.fixture(scope="module")
def server(router_server) -> Iterator[object]:
    saved = os.environ.get("SLM_ROUTER_URL")
    os.environ["SLM_ROUTER_URL"] = router_server.base_url
    try:
        yield router_server
    finally:
        if saved is None:
            os.environ.pop("SLM_ROUTER_URL", None)
        else:
            os.environ["SLM_ROUTER_URL"] = saved


def test_python_examples(server: RouterServer, router: SLMRouter, doc_examples) -> None:
    outputs = doc_examples.run("server.md", {"router": router})
    assert len(outputs) >= 4
    text = "\n".join(outputs)
    for expected in ("84", "math {", "llm true", "12", "42", "72", "5", "slm-router:latest"):
        assert expected in text, expected
    assert server.service.accepted >= 8


def test_curl_examples(server: RouterServer, doc_examples) -> None:
    script = next(b for b in doc_examples.blocks("server.md", "bash") if "curl" in b)
    out = subprocess.run(["bash", "-eo", "pipefail", "-c", script], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "SLM_ROUTER_URL": server.base_url})
    assert out.returncode == 0, out.stderr
    assert '"answer": "84"' in out.stdout and '"stage": "math"' in out.stdout
    assert "x-slm-router-stage: slm" in out.stdout.lower()
    assert "data: [DONE]" in out.stdout and '"usage"' in out.stdout
    assert '"done": true' in out.stdout and '["slm-router"]' in out.stdout and '"ready"' in out.stdout


def test_configuration_example_is_valid(tmp_path, doc_examples) -> None:
    (block,) = doc_examples.blocks("server.md", "json")
    path = tmp_path / "serve.json"
    path.write_text(block)
    config = ServeConfig.load(path)
    settings = config.settings()
    assert settings.models["strict"] == {"threshold": 0.9} and settings.max_queue == 128
    assert json.loads(block)["router"]["gate"]["min_mean_prob"] == 0.6
    router = config.build_router()
    assert router.gate.threshold == 0.6 and router.on_fallback_error == "return_slm"
