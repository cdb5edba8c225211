"""In-memory datasets: every split is a pair of tensors kept on the training device.

Training batches are drawn by indexing these tensors with a shuffled index
tensor, never by a per-sample Python loop.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class TensorData:
    """Inputs ``x`` (float32, ``N x C x H x W`` or ``N x D``) and labels ``y`` (int64, ``N``)."""

    x: torch.Tensor
    y: torch.Tensor

    def __post_init__(self) -> None:
        if len(self.x) != len(self.y):
            raise ValueError(f"x has {len(self.x)} rows but y has {len(self.y)}")

    def __len__(self) -> int:
        return len(self.y)

    def to(self, device: torch.device | str) -> "TensorData":
        return TensorData(self.x.to(device), self.y.to(device))

    def take(self, index: torch.Tensor) -> "TensorData":
        index = index.to(self.y.device)
        return TensorData(self.x[index], self.y[index])

    def with_labels(self, y: torch.Tensor) -> "TensorData":
        return TensorData(self.x, y)


@dataclass
class Dataset:
    """A labelled image dataset loaded into tensors, already normalised."""

    name: str
    train: TensorData
    test: TensorData
    n_classes: int
    class_names: tuple[str, ...] = ()
    source: str = ""  # where it was read from, for captions and logs
    extra: dict = field(default_factory=dict)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.train.x.shape[1:])


def subset_per_class(data: TensorData, n: int, seed: int, skip: int = 0) -> TensorData:
    """The first ``n`` samples of each class under a seeded shuffle (deterministic).

    ``skip`` passes over the first ``skip`` of each class first: with the same seed,
    ``skip=n`` gives ``n`` more samples disjoint from ``subset_per_class(data, n, seed)``
    (a validation set held out of the training images).
    """
    if n <= 0:
        raise ValueError(f"samples per class must be positive, got {n}")
    if skip < 0:
        raise ValueError(f"skip must be non-negative, got {skip}")
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(data), generator=generator)
    labels = data.y.cpu()[order]
    keep = []
    for c in torch.unique(labels).tolist():
        keep.append(order[labels == c][skip:skip + n])
    index = torch.sort(torch.cat(keep)).values
    return data.take(index)


def subset_fraction(data: TensorData, fraction: float, seed: int) -> TensorData:
    """A seeded, class-stratified fraction of the samples (at least one per class)."""
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    if fraction == 1:
        return data
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(data), generator=generator)
    labels = data.y.cpu()[order]
    keep = []
    for c in torch.unique(labels).tolist():
        members = order[labels == c]
        keep.append(members[: max(1, int(round(fraction * len(members))))])
    return data.take(torch.sort(torch.cat(keep)).values)


def standardise(train: torch.Tensor, test: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel standardisation with the training set's mean and standard deviation."""
    dims = [0] + list(range(2, train.dim()))
    mean = train.mean(dim=dims, keepdim=True)
    std = train.std(dim=dims, keepdim=True).clamp_min(1e-8)
    return (train - mean) / std, (test - mean) / std
