"""NanoQA's losses, computed on the answer tokens only.

* :func:`answer_logits` runs the model's body (the transformer without its LM head) over the whole sequence,
  gathers the hidden states at the positions that predict an answer token, and applies the LM head there only:
  the 49k-way head over a 200-token context would cost more than the rest of the step.
* :func:`focal_loss`: token-level focal loss ``-(1 - p_t)^gamma * log p_t`` (Lin et al. 2017); ``gamma=0`` is
  exactly cross-entropy. It down-weights tokens the model already gets right and so keeps pushing probability
  mass only where it is still wrong, which is also a known way to make the probabilities better calibrated.
* :func:`kl_distill_loss`: token-level KL(teacher || student) on the same positions, for a teacher that shares the
  student's tokenizer (zero when the student is the teacher).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F


def _parts(model: Any) -> tuple[Any, Any]:
    """The body (decoder without head) and the LM head of a causal LM, peft-wrapped or not."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return base.get_decoder(), base.get_output_embeddings()


def answer_logits(model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                  positions: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """Logits ``(n, vocab)`` at ``positions`` (``(rows, columns)``; each the position *before* an answer token)."""
    body, head = _parts(model)
    hidden = body(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
    return head(hidden[positions])


def focal_loss(logits: torch.Tensor, targets: torch.Tensor, gamma: float = 2.0,
               weights: torch.Tensor | None = None) -> torch.Tensor:
    """Mean token-level focal loss of ``logits`` ``(n, vocab)`` for ``targets`` ``(n,)``; ``gamma=0`` is CE.

    ``weights`` ``(n,)`` weights each token (a weighted mean), e.g. teacher answers below gold ones.
    """
    logp = F.log_softmax(logits.float(), dim=-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    loss = -logp if gamma == 0 else -((1.0 - logp.exp()) ** gamma) * logp
    if weights is None:
        return loss.mean()
    return (loss * weights).sum() / weights.sum().clamp_min(1e-12)


def kl_distill_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                    temperature: float = 1.0) -> torch.Tensor:
    """Mean token-level KL(teacher || student) at temperature ``T``, scaled by ``T**2`` (Hinton et al.)."""
    t = temperature
    s_logp = F.log_softmax(student_logits.float() / t, dim=-1)
    t_logp = F.log_softmax(teacher_logits.float() / t, dim=-1)
    kl = F.kl_div(s_logp, t_logp, log_target=True, reduction="none").sum(-1)
    return kl.mean() * t * t


__all__ = ["answer_logits", "focal_loss", "kl_distill_loss"]
