"""Which gate a router uses when none is named: the shipped learned gate fitted for its SLM, else the seed rule.

Gate files fitted for the SLMs this project ships live in ``gates/shipped/*.json`` (package data). Each names the
sha256 of the weights it was fitted for; :func:`default_gate` returns the one whose hash matches the SLM's
(:meth:`~langchain_slm_router.slm.SLMBackend.weights_sha256`), and :class:`GatePolicy` (mean token probability
>= 0.6, the seed's rule) for any other SLM, or when no file matches. ``SLMRouter(gate="threshold")`` asks for the
seed's rule explicitly.

Gate files that were fitted and measured for a packaged SLM but did not become its default live in
``gates/fitted/*.json``: ``SLMRouter(gate="fitted")`` (``ChatSLMRouter(gate="fitted")``, ``SLMRouterLLM(gate=
"fitted")``, ``"gate": "fitted"`` in a serve configuration) uses the one fitted for the router's SLM, and refuses
an SLM that none was fitted for. ``gates/fitted/smollm2.json`` is the learned gate of issue 18 for ``LocalSLM()``
(docs/gates.md says what it does and why it is not the default yet).
"""

from __future__ import annotations

import functools
from pathlib import Path

from langchain_slm_router.errors import ConfigError
from langchain_slm_router.gates.base import Gate
from langchain_slm_router.gates.learned import LearnedGate
from langchain_slm_router.gates.threshold import GatePolicy
from langchain_slm_router.slm.base import SLMBackend

SHIPPED_GATES_DIR = Path(__file__).resolve().parent / "shipped"
"""Where the shipped default gate files are (none at present)."""
FITTED_GATES_DIR = Path(__file__).resolve().parent / "fitted"
"""Where the opt-in gate files fitted for packaged SLMs are (``SLMRouter(gate="fitted")``)."""


@functools.lru_cache(maxsize=2)
def _gates_in(folder: Path) -> tuple[LearnedGate, ...]:
    """The gate files of ``folder``, loaded (and validated) once per process."""
    return tuple(LearnedGate.load(p) for p in sorted(folder.glob("*.json")))


def _for_weights(gates: tuple[LearnedGate, ...], slm: SLMBackend | None) -> LearnedGate | None:
    """The gate among ``gates`` fitted for ``slm``'s weights, or ``None``."""
    if slm is None or not gates:
        return None
    sha = slm.weights_sha256()
    return next((g for g in gates if sha is not None and g.slm_sha256 == sha), None)


def shipped_gates() -> tuple[LearnedGate, ...]:
    """The shipped default gate files."""
    return _gates_in(SHIPPED_GATES_DIR)


def shipped_gate_for(slm: SLMBackend | None) -> LearnedGate | None:
    """The shipped gate fitted for ``slm``'s weights, or ``None``."""
    return _for_weights(shipped_gates(), slm)


def fitted_gates() -> tuple[LearnedGate, ...]:
    """The opt-in fitted gate files."""
    return _gates_in(FITTED_GATES_DIR)


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


def is_shipped(gate: Gate) -> bool:
    """Whether ``gate`` is one of the shipped gates (at any threshold), i.e. was chosen for the SLM, not by the user."""
    return isinstance(gate, LearnedGate) and bool(gate.info.get("shipped"))


__all__ = ["FITTED_GATES_DIR", "SHIPPED_GATES_DIR", "default_gate", "fitted_gate_for", "fitted_gates", "is_shipped",
           "shipped_gate_for", "shipped_gates"]
