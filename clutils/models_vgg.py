"""VGG9, the convolutional network of the SPP paper's natural-image experiments (Peng et al., Section 4.2.2:
"VGG with 9 layers and batch normalization"; Figures 3 and 10).

The paper names the network and nothing more; the book's VGG9 has nine weight layers in VGG's pattern
(3x3 convolutions, each followed by batch normalisation and a ReLU, 2x2 max pooling between stages)::

    conv64 - conv64 - pool - conv128 - conv128 - pool - conv256 - conv256 - pool - fc512 - fc512 - output

six convolutions, two hidden fully connected layers (dropout 0.5) and the output layer(s), the ninth.
:func:`build_vgg9_model` puts it under the head a benchmark's scenario needs (one output layer per task
for the task-incremental scenario), as :func:`clutils.models.build_model` does for its own bodies.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from .data.benchmarks import Benchmark
from .models import ContinualModel, MultiHead, SingleHead

#: Channels of the convolutions, "M" a 2x2 max pooling.
VGG9_STAGES: tuple = (64, 64, "M", 128, 128, "M", 256, 256, "M")


class VGG9(nn.Module):
    """The body of VGG9 (module docstring); ``out_features`` is the width of its last hidden layer."""

    def __init__(self, in_channels: int = 3, image_size: int = 32, stages: Sequence = VGG9_STAGES,
                 fc: int = 512, dropout: float = 0.5):
        super().__init__()
        layers: list[nn.Module] = []
        channels = in_channels
        for item in stages:
            if item == "M":
                layers.append(nn.MaxPool2d(2))
            else:
                layers += [nn.Conv2d(channels, int(item), 3, padding=1), nn.BatchNorm2d(int(item)), nn.ReLU()]
                channels = int(item)
        self.features = nn.Sequential(*layers, nn.Flatten())
        with torch.no_grad():
            n = self.features(torch.zeros(1, in_channels, image_size, image_size)).shape[1]
        self.classifier = nn.Sequential(nn.Linear(n, fc), nn.ReLU(), nn.Dropout(dropout),
                                        nn.Linear(fc, fc), nn.ReLU(), nn.Dropout(dropout))
        self.out_features = fc

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def build_vgg9_model(benchmark: Benchmark, seed: int | None = None, **options) -> ContinualModel:
    """VGG9 under the head ``benchmark``'s scenario needs (a head per task for ``task``, else one)."""
    if len(benchmark.input_shape) != 3:
        raise ValueError(f"VGG9 takes images (C x H x W), got inputs of shape {benchmark.input_shape}")
    if seed is not None:
        torch.manual_seed(seed)
    channels, height, width = benchmark.input_shape
    if height != width or height % 8:
        raise ValueError(f"VGG9 takes square images whose side is a multiple of 8, got {height} x {width}")
    body = VGG9(channels, height, **options)
    head = (MultiHead(body.out_features, benchmark.head_sizes) if benchmark.scenario == "task"
            else SingleHead(body.out_features, benchmark.head_sizes[0]))
    return ContinualModel(body, head)


def training_flops(model: nn.Module, input_shape: Sequence[int], task: int | None = 0) -> float:
    """Floating-point operations of one training step on one sample (forward and backward), counted by
    ``torch.utils.flop_counter`` on a batch of two (batch normalisation needs two), halved; a backward
    pass counts about twice the forward."""
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.zeros(2, *input_shape)
    was = model.training
    model.train()
    counter = FlopCounterMode(display=False)
    with counter:
        model(x, task).sum().backward()
    model.zero_grad(set_to_none=True)
    model.train(was)
    return counter.get_total_flops() / 2
