"""Memory Aware Synapses (Aljundi, Babiloni, Elhoseiny, Rohrbach and Tuytelaars, ECCV 2018).

The importance of a parameter is how sensitive the network's output is to it,
measured without labels: with ``f(x)`` the output logits,

    Omega_k = 1/N sum_i | d ||f(x_i)||_2^2 / d theta_k |

(the paper's Eq. 4 with the squared L2 norm of the output). Here it is the
mean of the *per-sample* absolute gradients, computed exactly and vectorised
(:func:`clutils.strategies.fisher.per_sample_gradient_power_sum`), not the
batch approximation ``|gradient of a batch's summed norms|`` that many
implementations use, in which gradients of different samples can cancel. It is measured on the task's
training data (or ``samples`` of them) at the end of the task (after the
benchmark's final task only when asked for), accumulated
over tasks (``Omega <- Omega + Omega_task``), and later tasks minimise

    L(theta) + lam * sum_k Omega_k (theta_k - theta*_k)^2,

anchored at the latest weights. ``lam = 1`` is the paper's setting. For a
multi-head model the output is the current task's head; for an expanding
class-incremental head the not-yet-active outputs are left out.
"""
from __future__ import annotations

import torch

from ..models import MASKED_LOGIT
from .ewc import check_positive_int_or_none, sample_rows, task_seed
from .fisher import model_task, per_sample_gradient_power_sum
from .quadratic import QuadraticPenalty
from .registry import register


def _squared_output_norm(logits: torch.Tensor, _label: torch.Tensor) -> torch.Tensor:
    active = logits > MASKED_LOGIT / 2  # an expanding head's closed outputs carry no signal
    return torch.where(active, logits, torch.zeros_like(logits)).square().sum()


def mas_importance(model: torch.nn.Module, x: torch.Tensor, task: int | None = None,
                   chunk_size: int = 256, fast_linear: bool = True) -> dict[str, torch.Tensor]:
    """``Omega_k = 1/N sum_i |d ||f(x_i, task)||^2 / d theta_k|`` per trainable parameter name."""
    if len(x) == 0:
        raise ValueError("the MAS importance needs at least one sample")
    total = per_sample_gradient_power_sum(model, x, None, task, _squared_output_norm, power=1,
                                          chunk_size=chunk_size, fast_linear=fast_linear)
    return {n: t / len(x) for n, t in total.items()}


@register
class MAS(QuadraticPenalty):
    """MAS: penalty ``lam * sum_k Omega_k (theta_k - theta*_k)^2``, Omega from output sensitivity."""

    name = "mas"
    strength_name = "lam"
    measures_after_task = True
    defaults = {"lam": 1.0, "samples": None, "chunk_size": 256, "seed": 0}

    def __init__(self, **hyperparameters):
        super().__init__(**hyperparameters)
        check_positive_int_or_none("samples", self.hp["samples"])
        check_positive_int_or_none("chunk_size", self.hp["chunk_size"])

    def task_importance(self, model, task, data) -> dict[str, torch.Tensor]:
        generator = torch.Generator().manual_seed(task_seed(self.hp["seed"], task.index))
        x, _ = sample_rows(data.data.x, data.data.y, self.hp["samples"], generator)
        return mas_importance(model, x, model_task(self.benchmark, task), self.hp["chunk_size"])

    def measure(self, model, task, data) -> dict[str, torch.Tensor]:
        """``Omega <- Omega + Omega_task``."""
        new = self.task_importance(model, task, data)
        return {n: self.importance[n] + v if n in self.importance else v for n, v in new.items()}
