"""Domain-adversarial training with a gradient-reversal layer (DANN; Ganin et al., JMLR 2016).

Lecture, section 2, "Domain adaptation": learn :math:`f: X_T \\to Y_T` from labelled source data
:math:`(X_S, Y_S)` and *unlabelled* target inputs :math:`X_T` by making the features of the two
domains indistinguishable. A domain classifier :math:`D` reads the features :math:`\\phi(x)` and
is trained to tell source from target; the feature extractor is trained to *fool* it. Both happen
in one backward pass through the **gradient-reversal layer** :math:`R_\\lambda`:

.. math::

    R_\\lambda(h) = h, \\qquad \\frac{\\partial R_\\lambda}{\\partial h} = -\\lambda I ,

so minimising :math:`L_y(\\phi(x_s)) + L_d(D(R_\\lambda(\\phi(x))))` descends on :math:`L_d` for
:math:`D` and ascends on it (scaled by :math:`\\lambda`) for :math:`\\phi` (Ganin et al., Eq. 9-10
and Section 5). :math:`\\lambda` ramps up from 0 over training,
:math:`\\lambda_p = 2 / (1 + e^{-\\gamma p}) - 1` with :math:`p` the fraction of training done and
:math:`\\gamma = 10` (Section 5.2.2), so the domain classifier's noisy early gradient does not
disturb the features before they are useful.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn
import torch.nn.functional as F

from ..models import MLP
from .training import index_batches, make_optimizer


class GradientReversal(torch.autograd.Function):
    """Identity forward; the gradient multiplied by ``-lambd`` backward."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, lambd: float) -> torch.Tensor:
        ctx.lambd = float(lambd)
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return -ctx.lambd * grad, None


def grad_reverse(x: torch.Tensor, lambd: float = 1.0) -> torch.Tensor:
    """:math:`R_\\lambda(x)`: ``x`` unchanged, its gradient reversed and scaled by ``lambd``."""
    return GradientReversal.apply(x, lambd)


def dann_lambda(progress: float, gamma: float = 10.0) -> float:
    """Ganin et al.'s schedule :math:`2 / (1 + e^{-\\gamma p}) - 1` for ``progress`` p in [0, 1]."""
    if not 0.0 <= progress <= 1.0:
        raise ValueError(f"progress must be in [0, 1], got {progress}")
    return 2.0 / (1.0 + math.exp(-gamma * progress)) - 1.0


class DANN(nn.Module):
    """A feature extractor (MLP body), a label classifier and a domain classifier behind :math:`R_\\lambda`."""

    def __init__(self, in_features: int, hidden: Sequence[int], n_classes: int, domain_hidden: int = 64):
        super().__init__()
        self.body = MLP(in_features, tuple(hidden))
        self.head = nn.Linear(self.body.out_features, n_classes)
        self.domain = nn.Sequential(nn.Linear(self.body.out_features, domain_hidden), nn.ReLU(),
                                    nn.Linear(domain_hidden, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The label logits (what is evaluated on the target domain)."""
        return self.head(self.body(x))

    def domain_logits(self, features: torch.Tensor, lambd: float) -> torch.Tensor:
        return self.domain(grad_reverse(features, lambd))


def dann_loss(model: DANN, xs: torch.Tensor, ys: torch.Tensor, xt: torch.Tensor, lambd: float,
              adapt: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """The label loss on the source batch and the domain loss on both batches (0 when not ``adapt``).

    Minimising their sum trains the domain classifier to separate the domains and, through
    :math:`R_\\lambda`, the body to confuse it.
    """
    fs = model.body(xs)
    label = F.cross_entropy(model.head(fs), ys)
    if not adapt:
        return label, torch.zeros((), device=xs.device)
    ft = model.body(xt)
    domains = torch.cat([torch.zeros(len(xs)), torch.ones(len(xt))]).long().to(xs.device)
    domain = F.cross_entropy(model.domain_logits(torch.cat([fs, ft]), lambd), domains)
    return label, domain


def train_dann(model: DANN, xs: torch.Tensor, ys: torch.Tensor, xt: torch.Tensor, *, steps: int, lr: float,
               batch_size: int, seed: int, adapt: bool = True, gamma: float = 10.0, max_lambda: float = 1.0,
               optimizer: str = "adam") -> dict[str, list[float]]:
    """Train on labelled source ``(xs, ys)`` and unlabelled target ``xt``; ``adapt=False`` is source-only.

    Each step draws a source batch and a target batch of ``batch_size``; :math:`\\lambda` follows
    :func:`dann_lambda` times ``max_lambda``. Returns the per-step label loss, domain loss and
    :math:`\\lambda`. Source-only training runs the same steps on the same source batches.
    """
    opt = make_optimizer(list(model.parameters()), optimizer, lr)
    generator = torch.Generator().manual_seed(seed)
    target_batches = index_batches(len(xt), batch_size, steps, torch.Generator().manual_seed(seed + 1), xt.device)
    history: dict[str, list[float]] = {"label": [], "domain": [], "lambda": []}
    model.train()
    for step, index in enumerate(index_batches(len(ys), batch_size, steps, generator, xs.device)):
        lambd = max_lambda * dann_lambda(step / max(steps - 1, 1), gamma)
        tindex = next(target_batches)
        label, domain = dann_loss(model, xs[index], ys[index], xt[tindex], lambd, adapt)
        opt.zero_grad(set_to_none=True)
        (label + domain).backward()
        opt.step()
        history["label"].append(label.item())
        history["domain"].append(domain.item())
        history["lambda"].append(lambd)
    model.eval()
    return history
