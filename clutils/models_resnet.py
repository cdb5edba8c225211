"""ResNet-18 with a small network per task on top: the model of the SPP paper's Figure 9 (supplementary
section 6): "we added a new separate classifier and a fully connected layer before the classifier for
each task. Each new fc layer has 2048 neural units and the dropout rate is set to 0.5."

The body is torchvision's ResNet-18 without its final layer (512 features after global average
pooling), trained from scratch (the paper does not say it starts from ImageNet weights, and this
project downloads no weights). Each task's head is ``Linear(512, 2048) -> ReLU -> Dropout(0.5) ->
Linear(2048, classes)``; :meth:`ContinualModel.output_layers` returns these per-task networks, so SGD-F
trains them on a frozen body and SPP/EWC/MAS leave them out of their penalties (they are task-specific).
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from .data.benchmarks import Benchmark
from .models import ContinualModel, MultiHead


class TaskMLPHeads(MultiHead):
    """One ``in -> hidden -> classes`` network (ReLU, dropout) per task; ``task`` picks it (a
    :class:`~clutils.models.MultiHead` whose heads are small networks, so ``output_layers`` lists them)."""

    def __init__(self, in_features: int, sizes: Sequence[int], hidden: int = 2048, dropout: float = 0.5):
        nn.Module.__init__(self)
        if hidden < 1 or not 0.0 <= dropout < 1.0:
            raise ValueError(f"need hidden >= 1 and 0 <= dropout < 1, got {hidden} and {dropout}")
        self.sizes = list(sizes)
        self.heads = nn.ModuleList(
            nn.Sequential(nn.Linear(in_features, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, k))
            for k in self.sizes)


class RandomFlip(nn.Module):
    """In training mode, each image flipped left-right with probability ``p`` (the paper's augmentation for
    Figure 9: "randomly flipped the images left and right"); the identity in eval mode."""

    def __init__(self, p: float = 0.5):
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"flip probability must lie in [0, 1], got {p}")
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        flip = torch.rand(len(x), device=x.device) < self.p
        return torch.where(flip.view(-1, *([1] * (x.dim() - 1))), x.flip(-1), x)


def resnet18_body(in_channels: int = 3) -> nn.Module:
    """torchvision's ResNet-18, its final ``fc`` replaced by the identity (512 features out)."""
    import torchvision

    body = torchvision.models.resnet18(weights=None)
    if in_channels != 3:
        body.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
    body.fc = nn.Identity()
    body.out_features = 512
    return body


def build_resnet18_model(benchmark: Benchmark, seed: int | None = None, hidden: int = 2048,
                         dropout: float = 0.5, flip: float = 0.0) -> ContinualModel:
    """ResNet-18 with :class:`TaskMLPHeads` (one per task of ``benchmark``, task-incremental only); ``flip``
    > 0 puts a :class:`RandomFlip` (training mode only) in front of the body (the paper: 0.5)."""
    if benchmark.scenario != "task":
        raise ValueError(f"Figure 9's model has a head per task: the scenario must be 'task', got "
                         f"{benchmark.scenario!r}")
    if len(benchmark.input_shape) != 3:
        raise ValueError(f"ResNet-18 takes images (C x H x W), got inputs of shape {benchmark.input_shape}")
    if seed is not None:
        torch.manual_seed(seed)
    body = resnet18_body(benchmark.input_shape[0])
    if flip:
        body = nn.Sequential(RandomFlip(flip), body)
    return ContinualModel(body, TaskMLPHeads(512, benchmark.head_sizes, hidden, dropout))
