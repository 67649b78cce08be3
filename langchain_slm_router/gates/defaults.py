"""Which gate a router uses when none is named: the shipped learned gate fitted for its SLM, else the seed rule.

Gate files fitted for the SLMs this project ships live in ``gates/shipped/*.json`` (package data). Each names the
sha256 of the weights it was fitted for; :func:`default_gate` returns the one whose hash matches the SLM's
(:meth:`~langchain_slm_router.slm.SLMBackend.weights_sha256`), and :class:`GatePolicy` (mean token probability
>= 0.6, the seed's rule) for any other SLM, or when no file matches. ``SLMRouter(gate="threshold")`` asks for the
seed's rule explicitly.

Two ship today (docs/gates.md says what each does and how it was measured):

* ``gates/shipped/smollm2-nanoqa.json``: the learned gate of ``LocalSLM()``, the default SLM (SmolLM2-135M-Instruct
  with the shipped NanoQA adapter), fitted by ``benchmarks/bench_candidates.py`` (issue 19's table). A bare
  ``SLMRouter()`` uses it.
* ``gates/shipped/smollm2.json``: the learned gate of issue 18 for the stock model, ``LocalSLM(adapter=None)``.

Gate files that were fitted and measured for a packaged SLM but did not become its default go in
``gates/fitted/*.json``. ``SLMRouter(gate="fitted")`` (``ChatSLMRouter(gate="fitted")``,
``SLMRouterLLM(gate="fitted")``, ``"gate": "fitted"`` in a serve configuration) uses the gate fitted for the
router's SLM from either folder, and refuses an SLM that none was fitted for, where the default quietly falls back
to the seed's rule.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from langchain_slm_router.errors import ConfigError, ModelLoadError
from langchain_slm_router.gates.base import Gate
from langchain_slm_router.gates.learned import LearnedGate
from langchain_slm_router.gates.threshold import GatePolicy
from langchain_slm_router.slm.base import SLMBackend

SHIPPED_GATES_DIR = Path(__file__).resolve().parent / "shipped"
"""Where the shipped default gate files are."""
FITTED_GATES_DIR = Path(__file__).resolve().parent / "fitted"
"""Where the opt-in gate files fitted for packaged SLMs, but not their default, are (``SLMRouter(gate="fitted")``)."""


@functools.lru_cache(maxsize=2)
def _gates_in(folder: Path) -> tuple[LearnedGate, ...]:
    """The gate files of ``folder``, loaded (and validated) once per process."""
    return tuple(LearnedGate.load(p) for p in sorted(folder.glob("*.json")))


def _for_weights(gates: tuple[LearnedGate, ...], slm: SLMBackend | None) -> LearnedGate | None:
    """The gate among ``gates`` fitted for ``slm``'s weights, or ``None``."""
    if slm is None or not gates:
        return None
    try:
        sha = slm.weights_sha256()
    except ModelLoadError:  # weights not there (yet): no shipped gate; loading the SLM reports it, on first use
        return None
    return next((g for g in gates if sha is not None and g.slm_sha256 == sha), None)


def fitted_for(gate: Gate, slm: SLMBackend | None) -> bool:
    """Whether ``gate`` is a learned gate fitted for ``slm``'s weights."""
    return isinstance(gate, LearnedGate) and _for_weights((gate,), slm) is not None


def shipped_gates() -> tuple[LearnedGate, ...]:
    """The shipped default gate files."""
    return _gates_in(SHIPPED_GATES_DIR)


def shipped_gate_for(slm: SLMBackend | None) -> LearnedGate | None:
    """The shipped gate fitted for ``slm``'s weights, or ``None``."""
    return _for_weights(shipped_gates(), slm)


def fitted_gates() -> tuple[LearnedGate, ...]:
    """Every gate file fitted for a packaged SLM: the shipped defaults first, then the opt-in ones."""
    return shipped_gates() + _gates_in(FITTED_GATES_DIR)


def fitted_gate_for(slm: SLMBackend | None) -> LearnedGate:
    """The fitted gate file for ``slm``'s weights (``SLMRouter(gate="fitted")``).

    Raises:
        ConfigError: no fitted gate matches the SLM's weights (another model, another adapter, or no SLM).
    """
    gate = _for_weights(fitted_gates(), slm)
    if gate is None:
        sha = slm.weights_sha256() if slm is not None else None
        have = ", ".join(f"{g.slm_name} ({g.slm_sha256[:12]})" for g in fitted_gates() if g.slm_sha256) or "none"
        raise ConfigError(
            f"gate='fitted': no fitted gate file matches this SLM "
            f"({slm.model_name if slm is not None else 'no SLM'}, weights {sha[:12] if sha else 'unknown'}); "
            f"fitted for: {have}. Use gate='threshold', or fit one with `slm-router train-gate`.")
    return gate


def default_gate(slm: SLMBackend | None) -> Gate:
    """The gate a router with ``slm`` uses by default (see the module docstring)."""
    return shipped_gate_for(slm) or GatePolicy()


SHIPPED_REFERENCE = "shipped"
"""The ``gate`` key of a dumped configuration that names a shipped gate file instead of inlining it."""


def gate_reference(gate: Gate | None) -> dict[str, Any] | None:
    """How a configuration dump names ``gate`` when it is a shipped gate file: its identity (name, the SHA-256 of
    its fitted numbers, its thresholds) instead of ~1 MB of numbers; ``None`` for any other gate (dumped whole)."""
    if gate is None or not is_shipped(gate):
        return None
    return {**gate.identity(), "gate": SHIPPED_REFERENCE}


def resolve_gate_reference(ref: dict[str, Any]) -> LearnedGate:
    """The shipped gate a :func:`gate_reference` names, at the thresholds it records.

    Raises:
        ConfigError: no shipped gate file of this version has those fitted numbers.
    """
    sha = ref.get("sha256")
    gate = next((g for g in shipped_gates() if g.identity()["sha256"] == sha), None)
    if gate is None:
        raise ConfigError(f"The configuration names a shipped gate file ({ref.get('slm_name')}, sha256 "
                          f"{str(sha)[:12]}) that this version of langchain-slm-router does not ship. Name the gate "
                          "again (gate='threshold', gate='fitted', or a LearnedGate.load(path)).")
    if ref.get("min_p_correct") is not None:
        gate = gate.with_threshold(float(ref["min_p_correct"]))
    if gate.pre is not None and ref.get("pre_min_p_correct") is not None:
        gate = gate.model_copy(update={"pre": gate.pre.model_copy(
            update={"min_p_correct": float(ref["pre_min_p_correct"])})})
    return gate


def is_shipped(gate: Gate) -> bool:
    """Whether ``gate`` is one of the shipped gates (at any threshold), i.e. was chosen for the SLM, not by the user."""
    return isinstance(gate, LearnedGate) and bool(gate.info.get("shipped"))


__all__ = ["FITTED_GATES_DIR", "SHIPPED_GATES_DIR", "SHIPPED_REFERENCE", "default_gate", "fitted_for",
           "fitted_gate_for", "fitted_gates", "gate_reference", "is_shipped", "resolve_gate_reference",
           "shipped_gate_for", "shipped_gates"]
