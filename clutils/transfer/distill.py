"""Knowledge distillation with a temperature (Hinton, Vinyals and Dean, 2015).

Lecture, section 2, "Matching outputs": a (small) student mimics a (large) teacher trained on the
same task and domain. Both outputs are softened by a temperature :math:`T \\ge 1`,

.. math:: q_{i,T} = \\frac{\\exp(z_i / T)}{\\sum_j \\exp(z_j / T)} ,

and the student minimises

.. math:: \\mathcal{L} = (1 - \\alpha)\\, \\mathcal{L}_{ce}(\\mathbf{y}, \\mathbf{q})
          + \\alpha\\, T^2\\, \\mathcal{L}_{ce}(\\mathbf{p}_T, \\mathbf{q}_T)

with :math:`\\mathbf{p}` the teacher's and :math:`\\mathbf{q}` the student's outputs. The soft
term's gradient with respect to a student logit is :math:`\\frac{1}{T}(q_{i,T} - p_{i,T})`, which
for :math:`T` large against the (zero-mean) logits is about :math:`\\frac{1}{N T^2}(z_i - v_i)`:
the factor :math:`T^2` keeps the soft term's share of the gradient the same whatever :math:`T`.

Continual learning reuses this loss to *remember*: LwF distils the previous model's outputs on the
new task's inputs (the old model is the teacher), DER distils logits stored in a replay buffer.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def soft_targets(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """:math:`q_T = \\mathrm{softmax}(z / T)` along the last dimension."""
    if temperature <= 0:
        raise ValueError(f"the temperature must be positive, got {temperature}")
    return F.softmax(logits / temperature, dim=-1)


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float,
                      scale: bool = True) -> torch.Tensor:
    """:math:`T^2 \\mathcal{L}_{ce}(p_T, q_T)`, the batch mean (without the :math:`T^2` when ``scale`` is False).

    The teacher's logits are treated as constants (no gradient flows into the teacher).
    """
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(f"student and teacher logits differ in shape: {tuple(student_logits.shape)} "
                         f"and {tuple(teacher_logits.shape)}")
    p = soft_targets(teacher_logits.detach(), temperature)
    log_q = F.log_softmax(student_logits / temperature, dim=-1)
    ce = -(p * log_q).sum(dim=-1).mean()
    return ce * temperature ** 2 if scale else ce


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, y: torch.Tensor, temperature: float,
            alpha: float) -> torch.Tensor:
    """:math:`(1 - \\alpha) \\mathcal{L}_{ce}(y, q) + \\alpha T^2 \\mathcal{L}_{ce}(p_T, q_T)`."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    hard = F.cross_entropy(student_logits, y)
    return (1 - alpha) * hard + alpha * distillation_loss(student_logits, teacher_logits, temperature)
