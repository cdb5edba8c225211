"""A plain supervised training loop (no tasks, no strategy hooks), shared by the chapter's demos.

The data stay tensors on the device; a step draws a batch *by index* from a seeded permutation
(one permutation per pass over the data), so a run is reproducible from its seed. Training is
counted in **steps**, not epochs: the fine-tuning demo trains on 10 to thousands of images per
class, and a fixed number of updates is the fair comparison between those sizes.
"""
from __future__ import annotations

from typing import Callable, Iterator, Sequence

import torch
from torch import nn
import torch.nn.functional as F

OPTIMIZERS = ("adam", "sgd")


def index_batches(n: int, batch_size: int, steps: int, generator: torch.Generator,
                  device: torch.device | str = "cpu") -> Iterator[torch.Tensor]:
    """``steps`` index tensors of at most ``batch_size``: passes over a fresh permutation of ``range(n)``.

    A batch never straddles two passes (the last batch of a pass may be smaller), so every
    sample is seen once per pass.
    """
    if n <= 0:
        raise ValueError(f"need at least one sample, got n={n}")
    if batch_size <= 0 or steps < 0:
        raise ValueError(f"batch_size must be positive and steps non-negative, got {batch_size} and {steps}")
    done = 0
    while done < steps:
        order = torch.randperm(n, generator=generator).to(device)
        for start in range(0, n, batch_size):
            if done == steps:
                return
            yield order[start:start + batch_size]
            done += 1


def make_optimizer(groups: Sequence[dict] | Sequence[nn.Parameter], optimizer: str, lr: float,
                   weight_decay: float = 0.0) -> torch.optim.Optimizer:
    """Adam or SGD (momentum 0.9) over parameter groups (a group may carry its own ``lr``)."""
    if optimizer == "adam":
        return torch.optim.Adam(groups, lr=lr, weight_decay=weight_decay)
    if optimizer == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=0.9, weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer {optimizer!r}; choose one of: {', '.join(OPTIMIZERS)}")


def train_classifier(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, steps: int, lr: float,
                     batch_size: int, seed: int, groups: Sequence[dict] | None = None,
                     loss_fn: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
                     optimizer: str = "adam", weight_decay: float = 0.0) -> list[float]:
    """Train ``model`` on ``(x, y)`` for ``steps`` updates; returns the loss of every step.

    ``groups`` are the optimizer's parameter groups (default: every parameter that requires a
    gradient, at ``lr``); ``loss_fn(logits, y, index)`` replaces the cross-entropy (the
    distillation demo passes the indices to look up the teacher's logits).
    """
    if len(x) != len(y):
        raise ValueError(f"x has {len(x)} rows but y has {len(y)}")
    if groups is None:
        groups = [{"params": [p for p in model.parameters() if p.requires_grad]}]
    opt = make_optimizer(groups, optimizer, lr, weight_decay)
    generator = torch.Generator().manual_seed(seed)
    losses = []
    model.train()
    for index in index_batches(len(y), batch_size, steps, generator, x.device):
        logits = model(x[index])
        loss = F.cross_entropy(logits, y[index]) if loss_fn is None else loss_fn(logits, y[index], index)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    model.eval()
    return losses


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, batch_size: int = 4096) -> torch.Tensor:
    """The model's logits on ``x`` in eval mode, computed in batches."""
    model.eval()
    return torch.cat([model(x[i:i + batch_size]) for i in range(0, len(x), batch_size)])


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 4096) -> float:
    """The fraction of ``x`` whose arg-max logit is ``y``."""
    return float((predict(model, x, batch_size).argmax(1) == y).float().mean())
