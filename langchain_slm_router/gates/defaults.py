"""Which gate a router uses when none is named: the shipped learned gate fitted for its SLM, else the seed rule.

Gate files fitted for the SLMs this project ships live in ``gates/shipped/*.json`` (package data). Each names the
sha256 of the weights it was fitted for; :func:`default_gate` returns the one whose hash matches the SLM's
(:meth:`~langchain_slm_router.slm.SLMBackend.weights_sha256`), and :class:`GatePolicy` (mean token probability
>= 0.6, the seed's rule) for any other SLM, or when no file matches. ``SLMRouter(gate="threshold")`` asks for the
seed's rule explicitly.
"""

from __future__ import annotations

import functools
from pathlib import Path

from langchain_slm_router.gates.base import Gate
from langchain_slm_router.gates.learned import LearnedGate
from langchain_slm_router.gates.threshold import GatePolicy
from langchain_slm_router.slm.base import SLMBackend

SHIPPED_GATES_DIR = Path(__file__).resolve().parent / "shipped"
"""Where the shipped gate files are."""


@functools.lru_cache(maxsize=1)
def shipped_gates() -> tuple[LearnedGate, ...]:
    """The shipped gate files, loaded (and validated) once per process."""
    return tuple(LearnedGate.load(p) for p in sorted(SHIPPED_GATES_DIR.glob("*.json")))


def shipped_gate_for(slm: SLMBackend | None) -> LearnedGate | None:
    """The shipped gate fitted for ``slm``'s weights, or ``None``."""
    if slm is None:
        return None
    gates = shipped_gates()
    if not gates:
        return None
    sha = slm.weights_sha256()
    return next((g for g in gates if sha is not None and g.slm_sha256 == sha), None)


def default_gate(slm: SLMBackend | None) -> Gate:
    """The gate a router with ``slm`` uses by default (see the module docstring)."""
    return shipped_gate_for(slm) or GatePolicy()


def is_shipped(gate: Gate) -> bool:
    """Whether ``gate`` is one of the shipped gates (at any threshold), i.e. was chosen for the SLM, not by the user."""
    return isinstance(gate, LearnedGate) and bool(gate.info.get("shipped"))


__all__ = ["SHIPPED_GATES_DIR", "default_gate", "is_shipped", "shipped_gate_for", "shipped_gates"]
