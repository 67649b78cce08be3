"""The local SLM fails one query at a time, never hangs, and reads its shared model without locks.

The real SmolLM2: a faulty early-exit rule (it raises on long answers) fails only the queries it raises on, a
fault in the model's forward pass mid-stream ends ``stream_text`` with a typed error instead of a hang.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import pytest

from langchain_slm_router.errors import GenerationError
from langchain_slm_router.slm import LocalSLM, SLMGeneration

pytestmark = pytest.mark.integration

SHORT = [{"role": "user", "content": "Answer with one word: is water wet? Say yes or no."}]
LONG = [{"role": "user", "content": "Write a long story about a dragon who learns to bake bread."}]


def _raises_on_long_answers(probs: Sequence[float], left: int) -> bool:
    if len(probs) >= 12:
        raise RuntimeError("faulty early-exit rule")
    return False


def test_a_failing_query_fails_alone_in_a_batch(slm: LocalSLM) -> None:
    model = slm.model_copy(update={"max_new_tokens": 20, "max_batch_size": 8})
    alone = model.generate_batch([SHORT])[0]
    assert isinstance(alone, SLMGeneration) and alone.output_tokens < 12  # the short question stays short
    out = model.generate_batch([SHORT, LONG, SHORT], early_exit=_raises_on_long_answers)
    assert isinstance(out[1], GenerationError) and "faulty early-exit rule" in str(out[1])
    for gen in (out[0], out[2]):
        assert isinstance(gen, SLMGeneration)
        assert gen.text == alone.text  # answered as if alone (greedy)


def test_the_router_escalates_only_the_failing_query(slm: LocalSLM) -> None:
    from langchain_slm_router import GatePolicy, SLMRouter

    class FaultyGate(GatePolicy):
        def early_exit(self):  # noqa: ANN201 - the gate's rule, broken on long answers
            return _raises_on_long_answers

    router = SLMRouter(slm=slm.model_copy(update={"max_new_tokens": 20}), gate=FaultyGate(min_mean_prob=0.0),
                       fallback=None, math_engine=None)
    short, long = router.route_batch([SHORT[0]["content"], LONG[0]["content"]], return_exceptions=True)
    assert short.stage == "slm" and short.answer
    assert isinstance(long, Exception) and "faulty early-exit rule" in str(long)


def test_stream_text_ends_with_a_typed_error_when_generation_fails(slm: LocalSLM) -> None:
    model = slm.model_copy(update={"max_new_tokens": 40})
    calls = {"n": 0}

    def fail_on_the_third_step(module, args, output):  # noqa: ANN001 - a torch forward hook
        calls["n"] += 1
        if calls["n"] >= 3:
            raise RuntimeError("simulated device failure")

    handle = model.loaded.model.register_forward_hook(fail_on_the_third_step)
    box: dict[str, object] = {}

    def read() -> None:
        try:
            box["text"] = "".join(model.stream_text(LONG))
        except Exception as exc:  # noqa: BLE001
            box["error"] = exc

    try:
        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        reader.join(timeout=120)
    finally:
        handle.remove()
    assert not reader.is_alive(), "stream_text hangs after a failure in its generation thread"
    assert isinstance(box.get("error"), GenerationError) and "simulated device failure" in str(box["error"])
    assert model.loaded.lock.acquire(timeout=5)  # the model is free again
    model.loaded.lock.release()


def test_loaded_takes_no_process_lock_once_loaded(slm: LocalSLM) -> None:
    from langchain_slm_router.slm import local

    model = slm.model_copy(update={"max_new_tokens": 8})
    model.load()
    got: list[object] = []
    with local._CACHE_LOCK:  # another model loading (seconds) holds the process-wide lock
        reader = threading.Thread(target=lambda: got.append(model.loaded), daemon=True)
        reader.start()
        reader.join(timeout=5)
        blocked = reader.is_alive()
    reader.join()
    assert not blocked, "reading an already loaded model waited for another model's load"
    assert got[0] is slm.loaded
    assert model.model_copy(update={"dtype": "bfloat16"})._loaded is None or \
        model.model_copy(update={"dtype": "bfloat16"})._loaded[0] != (None, None, "bfloat16", "cpu", model.adapter)
