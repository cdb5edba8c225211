"""Multi-task learning: one shared body, one head per task, and three ways to weigh the task losses.

Lecture, section 3: the network minimises :math:`\\sum_i w_i \\mathcal{L}_i(\\theta)`; how to choose
the :math:`w_i` is "loss balancing".

* :class:`EqualWeighting`: :math:`w_i = 1`.
* :class:`UncertaintyWeighting` (Kendall, Gal and Cipolla, CVPR 2018): each task has a learned
  homoscedastic noise :math:`\\sigma_i`; for a classification task the likelihood
  :math:`\\mathrm{Softmax}(f / \\sigma^2)` gives, approximately,
  :math:`\\frac{1}{\\sigma_i^2} \\mathcal{L}_i + \\log \\sigma_i`. With :math:`s_i = \\log \\sigma_i^2`
  (what is trained, for stability) the loss is :math:`\\sum_i e^{-s_i} \\mathcal{L}_i + s_i / 2`, the
  weight :math:`w_i = e^{-s_i}`; at its optimum :math:`w_i = 1 / (2 \\mathcal{L}_i)`, so the task
  with the smaller loss (the easier one) gets the larger weight.
* :class:`GradNorm` (Chen, Badrinarayanan, Lee and Rabinovich, ICML 2018): with
  :math:`G_i = \\lVert \\nabla_W w_i \\mathcal{L}_i \\rVert_2` on the last shared layer :math:`W`,
  :math:`\\bar G` their mean, the inverse training rate :math:`\\tilde L_i = \\mathcal{L}_i(t) /
  \\mathcal{L}_i(0)` and :math:`r_i = \\tilde L_i / \\mathbb{E}_j \\tilde L_j`, the weights descend
  :math:`L_{grad} = \\sum_i \\lvert G_i - \\bar G\\, r_i^\\alpha \\rvert` (the target treated as a
  constant), then are renormalised to :math:`\\sum_i w_i = T`, the number of tasks.

In a continual-learning reading, multi-task training on every task's data at once is the *joint*
upper bound that continual methods are measured against.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn
import torch.nn.functional as F

from ..models import MLP
from .training import index_batches, make_optimizer


class MultiTaskNet(nn.Module):
    """A shared MLP body and one linear head per task; ``forward`` returns every task's logits."""

    def __init__(self, in_features: int, hidden: Sequence[int], outputs: Sequence[int]):
        super().__init__()
        if not outputs:
            raise ValueError("a multi-task network needs at least one head")
        self.body = MLP(in_features, tuple(hidden))
        self.heads = nn.ModuleList(nn.Linear(self.body.out_features, n) for n in outputs)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        features = self.body(x)
        return [head(features) for head in self.heads]

    def shared_layer(self) -> nn.Linear:
        """The last linear layer of the body (GradNorm's :math:`W`)."""
        return [m for m in self.body.modules() if isinstance(m, nn.Linear)][-1]


class EqualWeighting(nn.Module):
    """:math:`\\sum_i \\mathcal{L}_i`."""

    def __init__(self, n_tasks: int):
        super().__init__()
        self.n_tasks = n_tasks

    def weights(self) -> list[float]:
        return [1.0] * self.n_tasks

    def combine(self, losses: Sequence[torch.Tensor], shared: nn.Module | None = None) -> torch.Tensor:
        return torch.stack(list(losses)).sum()


class UncertaintyWeighting(nn.Module):
    """:math:`\\sum_i e^{-s_i} \\mathcal{L}_i + s_i / 2` with learned :math:`s_i = \\log \\sigma_i^2` (start 0).

    The :math:`s_i` are parameters of this module: give them to the optimizer with the network's.
    """

    def __init__(self, n_tasks: int):
        super().__init__()
        self.log_var = nn.Parameter(torch.zeros(n_tasks))

    def weights(self) -> list[float]:
        return torch.exp(-self.log_var.detach()).tolist()

    def combine(self, losses: Sequence[torch.Tensor], shared: nn.Module | None = None) -> torch.Tensor:
        stacked = torch.stack(list(losses))
        return (torch.exp(-self.log_var) * stacked + self.log_var / 2).sum()


class GradNorm(nn.Module):
    """GradNorm's weights :math:`w_i` (start 1), updated by their own Adam on :math:`L_{grad}` at every step.

    ``combine`` returns :math:`\\sum_i w_i \\mathcal{L}_i` with the weights *before* this step's
    update (as constants for the network), then updates and renormalises them.
    """

    def __init__(self, n_tasks: int, alpha: float = 1.5, lr: float = 0.025):
        super().__init__()
        if alpha < 0:
            raise ValueError(f"alpha must be non-negative, got {alpha}")
        self.alpha = alpha
        self.w = torch.ones(n_tasks, requires_grad=True)  # not a Parameter: the network's optimizer must not train it
        self.opt = torch.optim.Adam([self.w], lr=lr)
        self.initial: torch.Tensor | None = None
        self.last_norms: list[float] = []

    def weights(self) -> list[float]:
        return self.w.detach().tolist()

    def combine(self, losses: Sequence[torch.Tensor], shared: nn.Module | None = None) -> torch.Tensor:
        if shared is None:
            raise ValueError("GradNorm needs the last shared layer (shared=model.shared_layer())")
        stacked = torch.stack(list(losses))
        if self.initial is None:
            self.initial = stacked.detach().clamp_min(1e-12)
        W = shared.weight
        norms = torch.stack([torch.autograd.grad(self.w[i] * loss, W, retain_graph=True, create_graph=True)[0].norm()
                             for i, loss in enumerate(losses)])
        ratio = stacked.detach() / self.initial
        r = ratio / ratio.mean()
        target = (norms.mean() * r ** self.alpha).detach()
        grad_loss = (norms - target).abs().sum()
        self.opt.zero_grad(set_to_none=True)
        self.w.grad = torch.autograd.grad(grad_loss, self.w, retain_graph=True)[0]
        total = (self.w.detach().clone() * stacked).sum()  # a copy: w changes in place below
        self.opt.step()
        with torch.no_grad():
            self.w.clamp_(min=1e-3)
            self.w.mul_(len(self.w) / self.w.sum())
        self.last_norms = norms.detach().tolist()
        return total


WEIGHTINGS = {"equal": EqualWeighting, "uncertainty": UncertaintyWeighting, "gradnorm": GradNorm}


def make_weighting(name: str, n_tasks: int, **options) -> nn.Module:
    """``equal``, ``uncertainty`` or ``gradnorm`` (``options``: GradNorm's ``alpha`` and ``lr``)."""
    if name not in WEIGHTINGS:
        raise ValueError(f"unknown loss weighting {name!r}; choose one of: {', '.join(WEIGHTINGS)}")
    return WEIGHTINGS[name](n_tasks, **options) if name == "gradnorm" else WEIGHTINGS[name](n_tasks)


def train_multitask(model: MultiTaskNet, weighting: nn.Module, x: torch.Tensor, ys: Sequence[torch.Tensor], *,
                    steps: int, lr: float, batch_size: int, seed: int, optimizer: str = "adam",
                    record_every: int = 10) -> dict[str, list]:
    """Train every head on its labels ``ys[i]`` (the same inputs ``x``), the losses combined by ``weighting``.

    Returns the task losses and the weights every ``record_every`` steps.
    """
    if len(ys) != len(model.heads):
        raise ValueError(f"{len(ys)} label sets for {len(model.heads)} heads")
    opt = make_optimizer(list(model.parameters()) + list(weighting.parameters()), optimizer, lr)
    generator = torch.Generator().manual_seed(seed)
    history: dict[str, list] = {"step": [], "losses": [], "weights": []}
    model.train()
    for step, index in enumerate(index_batches(len(x), batch_size, steps, generator, x.device)):
        outputs = model(x[index])
        losses = [F.cross_entropy(out, y[index]) for out, y in zip(outputs, ys)]
        total = weighting.combine(losses, model.shared_layer())
        opt.zero_grad(set_to_none=True)
        total.backward()
        opt.step()
        if step % record_every == 0 or step == steps - 1:
            history["step"].append(step)
            history["losses"].append([loss.item() for loss in losses])
            history["weights"].append(weighting.weights())
    model.eval()
    return history
