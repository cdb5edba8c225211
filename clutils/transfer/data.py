"""The chapter's data: source/target splits and a domain shift, built from one labelled dataset.

* :func:`class_split`: the fine-tuning demo's two tasks, the first half of the classes (source)
  and the second half (target), each relabelled ``0..k-1``;
* :func:`shift_domain`: the domain-adaptation demo's target domain, the same kind of images
  with heavy additive Gaussian noise (optionally also *inverted*, :math:`x \\mapsto -x` on
  standardised pixels), labels unchanged;
* :func:`upper_body`: the multi-task demo's second task on Fashion-MNIST, "is it an upper-body
  garment" (T-shirt/top, Pullover, Coat, Shirt).
"""
from __future__ import annotations

import torch

from ..data.tensors import TensorData, subset_per_class

#: Fashion-MNIST classes worn on the upper body (T-shirt/top, Pullover, Coat, Shirt).
UPPER_BODY = (0, 2, 4, 6)


def class_split(data: TensorData, classes: list[int]) -> TensorData:
    """The samples of ``classes``, relabelled ``0..len(classes)-1`` in the given order."""
    if not classes:
        raise ValueError("no classes given")
    lookup = torch.full((int(data.y.max()) + 1,), -1, dtype=torch.long, device=data.y.device)
    lookup[torch.tensor(classes, device=data.y.device)] = torch.arange(len(classes), device=data.y.device)
    keep = lookup[data.y] >= 0
    return TensorData(data.x[keep], lookup[data.y[keep]])


def per_class(data: TensorData, n: int | None, seed: int) -> TensorData:
    """``n`` samples of each class (seeded), or all of them when ``n`` is None."""
    return data if n is None else subset_per_class(data, n, seed)


def shift_domain(x: torch.Tensor, noise: float, seed: int, invert: bool = False) -> torch.Tensor:
    """The target domain: ``-x`` (when ``invert``) plus Gaussian noise of standard deviation ``noise``."""
    if noise < 0:
        raise ValueError(f"noise must be non-negative, got {noise}")
    generator = torch.Generator().manual_seed(seed)
    eps = torch.randn(x.shape, generator=generator).to(x.device)
    return (-x if invert else x) + noise * eps


def upper_body(y: torch.Tensor, classes: tuple[int, ...] = UPPER_BODY) -> torch.Tensor:
    """1 where the class is an upper-body garment, else 0."""
    return torch.isin(y, torch.tensor(classes, device=y.device)).long()
