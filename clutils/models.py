"""Models: a feature extractor (``body``) followed by a classification head.

The head is chosen by the benchmark's scenario: one output layer per task
(task-incremental, "multi-head"), or a single layer (domain- and
class-incremental). A single class-incremental head is either *maximal* (all
classes from the start) or *expanding* (only the classes seen so far produce
logits), the two options of Maltoni and Lomonaco, Appendix A.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

from .data.benchmarks import Benchmark

MASKED_LOGIT = -1e9  # logit of a class an expanding head has not seen yet


class MLP(nn.Module):
    """Fully connected ReLU layers with optional dropout (input and hidden).

    ``MLP(784, (2000, 2000))`` is the net of SI and ALASSO on permuted MNIST,
    ``MLP(784, (512, 256))`` the one of SPP.
    """

    def __init__(self, in_features: int, hidden: Sequence[int] = (2000, 2000),
                 dropout: float = 0.0, input_dropout: float = 0.0):
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        if input_dropout:
            layers.append(nn.Dropout(input_dropout))
        width = in_features
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            if dropout:
                layers.append(nn.Dropout(dropout))
            width = h
        self.layers = nn.Sequential(*layers)
        self.out_features = width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class CifarNet(nn.Module):
    """The small CIFAR conv net of SI (Zenke et al.) and ALASSO (Table D).

    conv3x3(32) - conv3x3(32) - maxpool - dropout(0.25) -
    conv3x3(64) - conv3x3(64) - maxpool - dropout(0.25) - fc(512) - dropout(0.5).
    """

    def __init__(self, in_channels: int = 3, image_size: int = 32, width: int = 32,
                 fc: int = 512, dropout: bool = True):
        super().__init__()
        w = width

        def maybe(p: float) -> list[nn.Module]:
            return [nn.Dropout(p)] if dropout else []

        self.layers = nn.Sequential(
            nn.Conv2d(in_channels, w, 3, padding=1), nn.ReLU(),
            nn.Conv2d(w, w, 3), nn.ReLU(), nn.MaxPool2d(2), *maybe(0.25),
            nn.Conv2d(w, 2 * w, 3, padding=1), nn.ReLU(),
            nn.Conv2d(2 * w, 2 * w, 3), nn.ReLU(), nn.MaxPool2d(2), *maybe(0.25),
            nn.Flatten(),
        )
        with torch.no_grad():
            n = self.layers(torch.zeros(1, in_channels, image_size, image_size)).shape[1]
        self.fc = nn.Sequential(nn.Linear(n, fc), nn.ReLU(), *maybe(0.5))
        self.out_features = fc

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.layers(x))


class MultiHead(nn.Module):
    """One linear output layer per task; ``task`` picks the layer."""

    def __init__(self, in_features: int, sizes: Sequence[int]):
        super().__init__()
        self.sizes = list(sizes)
        self.heads = nn.ModuleList(nn.Linear(in_features, k) for k in sizes)

    def forward(self, features: torch.Tensor, task: int | torch.Tensor | None) -> torch.Tensor:
        if task is None:
            raise ValueError("a multi-head model needs the task id")
        if isinstance(task, int):
            return self.heads[task](features)
        # Per-sample task ids (joint training over several tasks): pad to the widest head.
        out = features.new_full((len(features), max(self.sizes)), MASKED_LOGIT)
        for t in torch.unique(task).tolist():
            rows = task == t
            out[rows, : self.sizes[t]] = self.heads[t](features[rows])
        return out


class SingleHead(nn.Module):
    """One linear output layer shared by all tasks, maximal or expanding."""

    def __init__(self, in_features: int, n_outputs: int, expanding: bool = False):
        super().__init__()
        self.linear = nn.Linear(in_features, n_outputs)
        self.expanding = expanding
        self.register_buffer("active", torch.ones(n_outputs, dtype=torch.bool) if not expanding
                             else torch.zeros(n_outputs, dtype=torch.bool))

    def observe(self, classes: Sequence[int]) -> None:
        """Open the outputs of ``classes`` (an expanding head grows by them)."""
        self.active[list(classes)] = True

    def forward(self, features: torch.Tensor, task=None) -> torch.Tensor:
        logits = self.linear(features)
        if self.expanding:
            logits = logits.masked_fill(~self.active, MASKED_LOGIT)
        return logits


class ContinualModel(nn.Module):
    """``body`` then ``head``; ``forward(x, task)`` returns the logits."""

    def __init__(self, body: nn.Module, head: nn.Module):
        super().__init__()
        self.body = body
        self.head = head

    def forward(self, x: torch.Tensor, task: int | torch.Tensor | None = None) -> torch.Tensor:
        return self.head(self.body(x), task)

    def prepare_task(self, classes: Sequence[int], scenario: str) -> None:
        """Called before a task is trained: an expanding class-incremental head grows."""
        if scenario == "class" and isinstance(self.head, SingleHead):
            self.head.observe(classes)

    def opened_outputs(self) -> dict[str, torch.Tensor]:
        """The state-dict entries that record which outputs are open (an expanding head's ``active``).

        They belong to the loop's bookkeeping of the classes met so far, not to the weights: a
        strategy that restores initial weights (``separate``, ``joint(from_scratch=True)``) keeps them.
        """
        return {name: value for name, value in self.state_dict().items()
                if name.rsplit(".", 1)[-1] == "active" and isinstance(self.head, SingleHead)}

    def output_layers(self) -> list[nn.Linear]:
        if isinstance(self.head, MultiHead):
            return list(self.head.heads)
        return [self.head.linear]


def zero_init_head(model: ContinualModel) -> None:
    """Set the output layer(s) to zero (AR1 Appendix E: no class starts favoured)."""
    with torch.no_grad():
        for layer in model.output_layers():
            layer.weight.zero_()
            layer.bias.zero_()


ARCHITECTURES = ("mlp", "cifarnet")
# The HAT chapter: gated networks with one head per task (clutils.models_hat), task-incremental only.
HAT_ARCHS = {"hat-mlp": "mlp", "hat-alexnet": "alexnet", "hat-resnet": "resnet"}
ARCHITECTURES = ARCHITECTURES + tuple(HAT_ARCHS)
# The expansion chapter: progressive networks, one MLP or convolutional column per task (clutils.models_pnn),
# task-incremental only. pnn-conv's columns are clutils.models_pnn.CONV_COLUMN (``hidden`` is not used).
PNN_ARCHS = ("pnn-mlp", "pnn-conv")
ARCHITECTURES = ARCHITECTURES + PNN_ARCHS
# The DEN chapter: an MLP that grows in preallocated shapes (clutils.models_den), task-incremental only.
ARCHITECTURES = ARCHITECTURES + ("den-mlp",)


def build_model(benchmark: Benchmark, arch: str = "mlp", hidden: Sequence[int] = (2000, 2000),
                dropout: float = 0.0, input_dropout: float = 0.0, expanding_head: bool = False,
                zero_init: bool = False, seed: int | None = None, **body_options) -> ContinualModel:
    """A model for ``benchmark``: the body ``arch`` and the head its scenario needs.

    With ``seed`` the initial weights are drawn from that seed (same seed, same model).
    """
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r}; choose one of: {', '.join(ARCHITECTURES)}")
    if arch in HAT_ARCHS:  # the HAT chapter's gated networks (clutils.models_hat)
        from .models_hat import build_hat_model
        return build_hat_model(benchmark, HAT_ARCHS[arch], hidden=hidden, dropout=dropout, seed=seed, **body_options)
    if arch in PNN_ARCHS:  # the expansion chapter's progressive network (clutils.models_pnn)
        from .models_pnn import build_pnn_model
        return build_pnn_model(benchmark, hidden=hidden, seed=seed, column=arch.split("-", 1)[1], **body_options)
    if arch == "den-mlp":  # the DEN chapter's growable MLP (clutils.models_den)
        from .models_den import build_den_model
        return build_den_model(benchmark, hidden=hidden, seed=seed, **body_options)
    if seed is not None:
        torch.manual_seed(seed)
    shape = benchmark.input_shape
    if arch == "mlp":
        body = MLP(math.prod(shape), hidden, dropout, input_dropout)
    else:
        body = CifarNet(shape[0], shape[-1], **body_options)
    if benchmark.scenario == "task":
        head: nn.Module = MultiHead(body.out_features, benchmark.head_sizes)
    else:
        head = SingleHead(body.out_features, benchmark.head_sizes[0],
                          expanding=expanding_head and benchmark.scenario == "class")
    model = ContinualModel(body, head)
    if zero_init:
        zero_init_head(model)
    return model
