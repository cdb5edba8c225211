"""Flat views of a model's gradient, for the strategies that project it (GEM, A-GEM)."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def trainable(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    return [p for p in model.parameters() if p.requires_grad]


def flat_grad(params: list[torch.nn.Parameter]) -> torch.Tensor:
    """``.grad`` of every parameter as one vector (zeros where a parameter has none)."""
    return torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in params])


def set_flat_grad(params: list[torch.nn.Parameter], vector: torch.Tensor) -> None:
    """Write ``vector`` back into the parameters' ``.grad``."""
    for p, part in zip(params, torch.split(vector, [p.numel() for p in params])):
        if p.grad is None:
            p.grad = part.view_as(p).clone()
        else:
            p.grad.copy_(part.view_as(p))


def loss_gradient(model: torch.nn.Module, params: list[torch.nn.Parameter], x: torch.Tensor, y: torch.Tensor,
                  task) -> torch.Tensor:
    """The gradient of the mean cross-entropy on ``(x, y)`` as one vector (``.grad`` untouched)."""
    loss = F.cross_entropy(model(x, task), y)
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    return torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1) for g, p in zip(grads, params)])
