"""Hidden states of the generating pass, for probes that predict whether the answer is right.

:class:`HiddenCapture` hooks chosen decoder layers of a transformers causal LM for the duration of one
``generate()`` call and keeps, per row of the batch and per layer, two vectors (no second forward pass):

* ``last_prompt@L{n}``: the output of layer ``n`` (1-based: ``n = 1`` is the first decoder layer, the last layer
  is the number of layers, before the final norm) at the last prompt token — what the model "thought" before it
  answered;
* ``answer_mean@L{n}``: the mean of that layer's output over the answer tokens as they are fed back while the
  model generates (the states that predicted the next answer token or the end of the answer). An answer with no
  fed token (an immediate end) uses the last prompt token's state.

Generation with a KV cache runs the prompt once (the first hooked call, all prompt positions) and then one
position per step (the token chosen at the step before), so the answer token ``i`` is seen at step ``i + 1``.
Rows that ended earlier in a padded batch are masked by their own answer length.

The vectors are plain float lists in :attr:`~langchain_slm_router.slm.SLMGeneration.hidden`, named by
:func:`hidden_key`; a backend that cannot give them leaves that field ``None``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

HIDDEN_POOLS: tuple[str, ...] = ("last_prompt", "answer_mean")
"""How a layer's states are pooled into one vector per answer."""

MIDDLE = "middle"
DEFAULT_HIDDEN_LAYERS: tuple[int | str, ...] = (MIDDLE, 0)
"""Captured by default: the middle layer (``n_layers // 2``) and the last one."""


def hidden_key(pool: str, layer: int) -> str:
    """The name of one captured vector, e.g. ``answer_mean@L15``."""
    return f"{pool}@L{layer}"


def decoder_layers(model: Any) -> Any | None:
    """The list of decoder layers of a transformers causal LM (``None`` when the architecture hides them)."""
    get = getattr(model, "get_decoder", None)
    decoder = get() if callable(get) else getattr(model, "model", None)
    layers = getattr(decoder, "layers", None)
    return layers if layers is not None and len(layers) else None


def resolve_layers(layers: Sequence[int | str], n_layers: int) -> list[int]:
    """1-based layer numbers: ``0`` is the last layer, ``-k`` the ``k``-th before it (``n_layers - k``) and
    ``"middle"`` is ``n_layers // 2``.

    Out-of-range numbers are a ValueError naming the model's depth.
    """
    out = []
    for layer in layers:
        n = n_layers // 2 if layer == MIDDLE else int(layer)
        n = n_layers + n if n <= 0 else n
        if not 1 <= n <= n_layers:
            raise ValueError(f"hidden layer {layer} is outside this model's 1..{n_layers} decoder layers")
        if n not in out:
            out.append(n)
    return out


class HiddenCapture:
    """Forward hooks on chosen decoder layers for one ``generate()`` call (use as a context manager)."""

    def __init__(self, model: Any, layers: Sequence[int | str]) -> None:
        blocks = decoder_layers(model)
        if blocks is None:
            raise ValueError(f"{type(model).__name__} exposes no decoder layers to read hidden states from")
        self.layers = resolve_layers(layers, len(blocks))
        self._blocks = blocks
        self._handles: list[Any] = []
        self.prompt: dict[int, Any] = {}
        """layer -> (batch, hidden) state at the last prompt position."""
        self.steps: dict[int, list[Any]] = {n: [] for n in self.layers}
        """layer -> per generation step after the prompt, (batch, hidden)."""

    def __enter__(self) -> HiddenCapture:
        for n in self.layers:
            self._handles.append(self._blocks[n - 1].register_forward_hook(self._hook(n)))
        return self

    def __exit__(self, *exc: object) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def _hook(self, n: int) -> Any:
        def keep(module: Any, args: Any, output: Any) -> None:
            states = output[0] if isinstance(output, (tuple, list)) else output
            last = states[:, -1, :].detach().float()
            if n not in self.prompt:
                self.prompt[n] = last
            else:
                self.steps[n].append(last)

        return keep

    def vectors(self, row: int, answer_len: int) -> dict[str, list[float]]:
        """The named vectors of one batch row whose answer has ``answer_len`` tokens."""
        import torch

        out: dict[str, list[float]] = {}
        for n in self.layers:
            if n not in self.prompt:  # generation failed before the first forward pass
                return {}
            prompt = self.prompt[n][row]
            fed = self.steps[n][:answer_len]
            mean = torch.stack([s[row] for s in fed]).mean(0) if fed else prompt
            out[hidden_key("last_prompt", n)] = prompt.tolist()
            out[hidden_key("answer_mean", n)] = mean.tolist()
        return out


__all__ = ["DEFAULT_HIDDEN_LAYERS", "HIDDEN_POOLS", "MIDDLE", "HiddenCapture", "decoder_layers", "hidden_key", "resolve_layers"]
