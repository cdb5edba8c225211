"""Elastic Weight Consolidation (Kirkpatrick et al., PNAS 2017), and online EWC (Schwarz et al., ICML 2018).

After each task the diagonal of the Fisher information is measured at the
trained weights ``theta*`` (after the benchmark's final task only when asked
for: see :class:`~clutils.strategies.quadratic.QuadraticPenalty`) (:func:`clutils.strategies.fisher.diagonal_fisher`,
per-sample gradients over the task's training data or ``fisher_samples`` of
them), and every later task minimises

    L(theta) + (lambda / 2) * sum_k F_k (theta_k - theta*_k)^2.

Several tasks are consolidated into one penalty, anchored at the latest weights
(option 2 of Maltoni and Lomonaco, Section 2.2; theta* already carries the
constraints of the earlier tasks):

* ``mode="consolidated"``: ``F <- F + F_task`` (the sum of the tasks' Fishers);
* ``mode="online"``: ``F <- gamma * F + F_task`` (online EWC of Schwarz et al.,
  whose decay ``gamma < 1`` lets old tasks fade; ``gamma = 1`` is the sum).

Hyperparameters (``defaults``):

* ``lam`` (lambda, the strength): Kirkpatrick et al. tune it per experiment and
  publish no general value, so 100 here is *not* a paper value: it is a middle
  setting (with the mean, 1/N, Fisher used here) that removes most forgetting of
  small MLPs on permuted digits; tune it per experiment. Large values make the
  step ``lr * lam * F_k`` overshoot (Maltoni and Lomonaco, Eq. 7).
* ``fisher``: ``"true"`` (labels sampled from the model's predictive
  distribution, the Fisher of the paper, seeded by ``seed``) or ``"empirical"``
  (the training labels).
* ``mode`` and ``gamma``: see above (``gamma`` is used by ``"online"`` only;
  1.0 by default, as Schwarz et al. give no general value).
* ``fisher_samples``: a seeded random sample of that many training samples for
  the Fisher (None: all of them); ``chunk_size``: samples per vectorised chunk.
* ``seed``: seeds the sample and the sampled labels (combined with the task index).
"""
from __future__ import annotations

import torch

from .fisher import FISHER_KINDS, diagonal_fisher, model_task
from .quadratic import QuadraticPenalty
from .registry import register

EWC_MODES = ("consolidated", "online")


def task_seed(seed: int, task_index: int) -> int:
    """A seed per (run seed, task): different tasks draw different samples."""
    return (int(seed) * 1_000_003 + 7_919 * task_index) % (2 ** 63)


def sample_rows(x: torch.Tensor, y: torch.Tensor, n: int | None, generator: torch.Generator
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` rows of (x, y) drawn without replacement with ``generator`` (all rows if None or n >= len)."""
    if n is None or n >= len(y):
        return x, y
    index = torch.randperm(len(y), generator=generator)[:n].to(y.device)
    return x[index], y[index]


def check_positive_int_or_none(name: str, value) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ValueError(f"{name} must be a positive integer or None, got {value!r}")


@register
class EWC(QuadraticPenalty):
    """EWC: penalty ``(lam / 2) * sum_k F_k (theta_k - theta*_k)^2`` with the diagonal Fisher ``F``."""

    name = "ewc"
    strength_name = "lam"
    measures_after_task = True
    defaults = {"lam": 100.0, "fisher": "true", "mode": "consolidated", "gamma": 1.0,
                "fisher_samples": None, "chunk_size": 256, "seed": 0}

    def __init__(self, **hyperparameters):
        super().__init__(**hyperparameters)
        if self.hp["fisher"] not in FISHER_KINDS:
            raise ValueError(f"fisher must be one of {', '.join(FISHER_KINDS)}; got {self.hp['fisher']!r}")
        if self.hp["mode"] not in EWC_MODES:
            raise ValueError(f"mode must be one of {', '.join(EWC_MODES)}; got {self.hp['mode']!r}")
        if not 0.0 <= float(self.hp["gamma"]) <= 1.0:
            raise ValueError(f"gamma must lie in [0, 1], got {self.hp['gamma']}")
        check_positive_int_or_none("fisher_samples", self.hp["fisher_samples"])
        check_positive_int_or_none("chunk_size", self.hp["chunk_size"])

    @property
    def strength(self) -> float:
        return float(self.hp["lam"]) / 2  # the 1/2 of (lambda/2) sum F (theta - theta*)^2

    @property
    def decay(self) -> float:
        """The factor of the old Fisher at consolidation: gamma (online) or 1 (consolidated)."""
        return float(self.hp["gamma"]) if self.hp["mode"] == "online" else 1.0

    def task_fisher(self, model, task, data) -> dict[str, torch.Tensor]:
        """The diagonal Fisher of ``task`` at the current weights."""
        generator = torch.Generator().manual_seed(task_seed(self.hp["seed"], task.index))
        x, y = sample_rows(data.data.x, data.data.y, self.hp["fisher_samples"], generator)
        return diagonal_fisher(model, x, y, model_task(self.benchmark, task), self.hp["fisher"],
                               self.hp["chunk_size"], generator)

    def combine(self, new: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``decay * F_old + F_new`` per parameter."""
        return {n: self.decay * self.importance[n] + f if n in self.importance else f.clone()
                for n, f in new.items()}

    def measure(self, model, task, data) -> dict[str, torch.Tensor]:
        return self.combine(self.task_fisher(model, task, data))
