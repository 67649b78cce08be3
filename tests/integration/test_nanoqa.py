"""NanoQA with the real SLM: a few training steps on a tiny slice, saving and reloading the adapter, the shipped
adapter against the stock model, and typed errors for bad adapter files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from langchain_slm_router import ModelLoadError
from langchain_slm_router.slm import LocalSLM
from langchain_slm_router.slm.adapter import ADAPTERS_DIR, SHIPPED_ADAPTER
from langchain_slm_router.training import TrainConfig, train
from langchain_slm_router.training.losses import answer_logits, kl_distill_loss

pytestmark = [pytest.mark.integration, pytest.mark.slow]  # loads the SLM; the tiny run trains 4 steps

QUESTIONS = [
    ("Answer the question using only the context. Reply with the shortest exact phrase from the context, nothing "
     'else. If the context does not contain the answer, reply with exactly "unanswerable".\n\nContext: The Eiffel '
     "Tower was completed in 1889 for the World's Fair in Paris. It was designed by the company of Gustave Eiffel."
     f"\n\nQuestion: {q}")
    for q in ("When was the Eiffel Tower completed?", "Whose company designed the tower?",
              "How tall is the Eiffel Tower?", "Who painted the Mona Lisa?", "In which city is the tower?")
]


def answers(slm: LocalSLM) -> list[str]:
    return [g.text for g in slm.generate_batch([[{"role": "user", "content": q}] for q in QUESTIONS])]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory, data_dir: Path):
    """Four SQuAD examples, one batch, four steps on the top two layers: enough to see the loss fall."""
    out = tmp_path_factory.mktemp("nanoqa") / "run"
    config = TrainConfig(out=out, data_dir=data_dir, examples=4, mix={"squad_v2": 1.0}, max_context_words=30,
                         batch_size=4, epochs=4, lr=3e-3, warmup_steps=0, lora_top_layers=2, checkpoint_every=2,
                         threads=1)
    return train(config, progress=False)


def tiny_lm() -> torch.nn.Module:
    """A real (randomly initialised) Llama-architecture causal LM, small enough for a quick test."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=97, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    return LlamaForCausalLM(cfg).eval()


def test_answer_logits_equal_the_full_heads_logits_at_those_positions() -> None:
    lm = tiny_lm()
    ids = torch.randint(0, 97, (2, 12))
    mask = torch.ones_like(ids)
    mask[1, 9:] = 0
    pos = (torch.tensor([0, 0, 1]), torch.tensor([3, 11, 8]))
    with torch.no_grad():
        full = lm(input_ids=ids, attention_mask=mask).logits
        got = answer_logits(lm, ids, mask, pos)
    assert torch.allclose(got, full[pos], atol=1e-5)
    # student == teacher: zero distillation loss on a real model's answer logits
    assert kl_distill_loss(got, answer_logits(lm, ids, mask, pos).detach()).abs().item() < 1e-6




def test_loss_goes_down_on_a_tiny_slice(tiny_run) -> None:
    losses = [float(x) for x in json.loads((tiny_run.out / "checkpoint" / "state.json").read_text())["losses"]]
    assert len(losses) == 4
    assert losses[-1] < losses[0]


def test_run_writes_adapter_card_checkpoint_and_curve(tiny_run) -> None:
    out = tiny_run.out
    assert (out / "adapter_model.safetensors").is_file() and (out / "adapter_config.json").is_file()
    assert not list(out.glob("*.bin")) and not list(out.glob("*.pt"))  # no pickle anywhere
    card = json.loads((out / "nanoqa_card.json").read_text())
    assert card["steps"] == 4 and card["loss"] == "focal(gamma=2)" and len(card["base_model_sha256"]) == 64
    assert card["data"]["examples"]["squad_v2"] == 4 and card["config"]["lora_top_layers"] == 2
    assert [c["step"] for c in card["curve"]] == [2, 4]
    assert all(Path(c["path"], "adapter_model.safetensors").is_file() for c in card["curve"])


def test_adapter_reloads_with_the_same_answers(tiny_run) -> None:
    trained = tiny_run.model.merge_and_unload().eval()
    stock = LocalSLM(adapter=None, max_new_tokens=12)
    tok = stock.loaded.tokenizer
    expected = []
    for q in QUESTIONS[:3]:
        ids, _ = stock.encode([{"role": "user", "content": q}])
        with torch.no_grad():
            seq = trained.generate(input_ids=torch.tensor([ids]), max_new_tokens=12, do_sample=False,
                                   pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
        expected.append(tok.decode(seq[0, len(ids):], skip_special_tokens=True).strip())
    reloaded = LocalSLM(adapter=str(tiny_run.out), max_new_tokens=12)
    got = [g.text for g in reloaded.generate_batch([[{"role": "user", "content": q}] for q in QUESTIONS[:3]])]
    assert got == expected
    assert reloaded.model_name == f"SmolLM2-135M-Instruct+{tiny_run.out.name}"


def test_resume_continues_from_the_checkpoint(tiny_run, data_dir: Path) -> None:
    config = TrainConfig(**{**tiny_run.card["config"], "out": tiny_run.out, "epochs": 5, "threads": 1})
    assert config.fingerprint() != TrainConfig(**tiny_run.card["config"]).fingerprint()  # epochs changed
    same = TrainConfig(**{**tiny_run.card["config"], "out": tiny_run.out, "max_minutes": 0.01})
    resumed = train(same, progress=False)
    assert resumed.card["steps"] == 4  # already done: nothing more to train, nothing lost


def test_shipped_adapter_changes_answers() -> None:
    stock = answers(LocalSLM(adapter=None, max_new_tokens=16))
    tuned = answers(LocalSLM(adapter=SHIPPED_ADAPTER, max_new_tokens=16))
    assert tuned != stock
    assert sum(a != b for a, b in zip(tuned, stock)) >= 2


def test_missing_adapter_folder(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="adapter=None"):
        LocalSLM(adapter=str(tmp_path / "nope")).load()


def test_adapter_folder_without_safetensors(tmp_path: Path) -> None:
    (tmp_path / "adapter_config.json").write_text("{}")
    (tmp_path / "adapter_model.bin").write_bytes(b"pickle")  # never loaded
    with pytest.raises(ModelLoadError, match="adapter_model.safetensors"):
        LocalSLM(adapter=str(tmp_path)).load()


def test_corrupt_adapter_weights(tmp_path: Path) -> None:
    shutil.copytree(ADAPTERS_DIR / SHIPPED_ADAPTER, tmp_path / "bad")
    (tmp_path / "bad" / "adapter_model.safetensors").write_bytes(b"\\x00garbage" * 100)
    with pytest.raises(ModelLoadError, match="corrupt"):
        LocalSLM(adapter=str(tmp_path / "bad")).load()


def test_adapter_for_another_base_model(tmp_path: Path) -> None:
    shutil.copytree(ADAPTERS_DIR / SHIPPED_ADAPTER, tmp_path / "other")
    card_path = tmp_path / "other" / "nanoqa_card.json"
    card = json.loads(card_path.read_text())
    card["base_model_sha256"] = "0" * 64
    card_path.write_text(json.dumps(card))
    with pytest.raises(ModelLoadError, match="trained on base weights"):
        LocalSLM(adapter=str(tmp_path / "other")).load()


def test_adapter_with_wrong_shapes(tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    shutil.copytree(ADAPTERS_DIR / SHIPPED_ADAPTER, tmp_path / "shapes")
    path = tmp_path / "shapes" / "adapter_model.safetensors"
    save_file({k: torch.zeros(3, 5) for k in load_file(str(path))}, str(path))
    with pytest.raises(ModelLoadError, match="another base model"):
        LocalSLM(adapter=str(tmp_path / "shapes")).load()


@pytest.mark.requires("llama_cpp")
def test_teacher_only_caches_answers_from_the_default_data(tmp_path, data_dir, monkeypatch) -> None:
    """`slm-router train --teacher-only --teacher-gguf` with no --data-dir reads the same data as training: the
    default data folder, here named by SLM_ROUTER_DATA_DIR (the shipped fixtures; never the network)."""
    from langchain_slm_router.cli import main
    from langchain_slm_router.evaluation.datasets import DATA_DIR_ENV
    from langchain_slm_router.slm.local import default_model_path

    monkeypatch.setenv(DATA_DIR_ENV, str(data_dir))

    cache = tmp_path / "teacher.jsonl"
    assert main(["train", "--teacher-only", "--teacher-gguf", str(default_model_path()), "--teacher-answers",
                 str(cache), "--examples", "3", "--mix", "squad_v2=1", "--threads", "1", "--no-progress"]) == 0
    rows = [json.loads(line) for line in cache.read_text().splitlines()]
    assert len(rows) == 3 and all(r["id"].startswith("squad_v2:") for r in rows)
