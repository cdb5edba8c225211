"""Networks with HAT's task gates (Serra et al., ICML 2018; ResNet port: Dinu's report).

Every masked layer ``l`` has one embedding row per task, ``e_l^t`` (one value per
unit of a linear layer, per channel of a conv layer), and its output is
multiplied by the attention

    a_l^t = sigmoid(s * e_l^t)

(Section 2.1 of the paper; the report's Listing 1). The gate sits where the
report's Listing 1 and the authors' code put it: on the layer's output after the
non-linearity, dropout and pooling. In the ResNet, where the report and the
``hat-cl`` port differ in details, the gate follows batch norm and ReLU
(conv -> BN -> ReLU -> gate), and a residual block's second gate multiplies the
block's output after the addition of the shortcut and the final ReLU.

Each network has one output layer per task (task-incremental, as in the paper);
the output layers are not gated. ``masked=False`` builds the same network
without gates (the SGD baselines and the joint reference).

The gradient masks of :class:`clutils.strategies.hat.HAT` need to know which
gates bound every parameter: :meth:`HATNet.gradient_map` gives, for each
parameter, the gate of its outputs and the gate of its inputs (``None`` for the
network's input), and how many spatial positions the input gate repeats over
(the first fully connected layer after a conv stack sees each channel at every
position of the flattened map).

Batch norm (``bn``): ``"shared"``, one BN per layer as in plain ResNet; or
``"task"``, one BN per layer per task, picked by the task id (the report's
ResNet-HAT-BN: 20 BN layers x 10 tasks = 200 in ResNet-18).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn

from .models import MultiHead

BN_MODES = ("shared", "task")


@dataclass(frozen=True)
class GradientGates:
    """The gates bounding one parameter: ``out`` (its output units), ``into`` (its input units).

    ``into`` is ``None`` for a layer reading the network's input (and for biases and BN
    parameters); ``repeat`` is the number of spatial positions each input channel covers
    (a fully connected layer after a flattened conv map).
    """

    out: str
    into: str | None = None
    repeat: int = 1


class Gates(nn.Module):
    """The task embeddings of one masked layer: ``e`` (tasks x units); ``a = sigmoid(s e[t])``.

    Initialised N(0, 1) as ``torch.nn.Embedding`` in the authors' code.
    """

    def __init__(self, n_tasks: int, units: int):
        super().__init__()
        self.embedding = nn.Parameter(torch.randn(n_tasks, units))

    def forward(self, task: int, s: float) -> torch.Tensor:
        return torch.sigmoid(s * self.embedding[task])


def _task_int(task) -> int:
    """HAT trains and tests one task at a time: the task id must be a single int."""
    if isinstance(task, torch.Tensor):
        if task.numel() == 1:
            return int(task.reshape(()).item())
        values = torch.unique(task)
        if len(values) == 1:
            return int(values.item())
        raise ValueError("a HAT network (gates or per-task batch norm) takes one task id per batch, "
                         "not a mix of tasks")
    if task is None:
        raise ValueError("a HAT network needs the task id (task-incremental)")
    return int(task)


class TaskBatchNorm(nn.Module):
    """Batch norm shared by all tasks (``mode="shared"``) or one per task (``mode="task"``)."""

    def __init__(self, channels: int, n_tasks: int, mode: str = "shared"):
        super().__init__()
        if mode not in BN_MODES:
            raise ValueError(f"bn must be one of {BN_MODES}, got {mode!r}")
        self.mode = mode
        self.norms = nn.ModuleList(nn.BatchNorm2d(channels) for _ in range(n_tasks if mode == "task" else 1))

    def forward(self, x: torch.Tensor, task) -> torch.Tensor:
        if self.mode == "shared":
            return self.norms[0](x)
        return self.norms[_task_int(task)](x)


class HATNet(nn.Module):
    """Base of the gated networks: ``forward(x, task)`` returns the task's logits.

    Subclasses define ``gate_sizes`` (gate name -> units, in forward order), ``features(x, task, gates)``
    (``gates`` maps a gate name to its attention, or is empty when unmasked) and
    ``gradient_map()``. ``s`` is the current scale (set by the strategy: annealed while
    training, ``s_max`` at test); ``last_gates`` the attentions of the last forward pass
    (the regulariser reads them).
    """

    def __init__(self, n_tasks: int, head_sizes: Sequence[int], gate_sizes: dict[str, int], masked: bool):
        super().__init__()
        self.n_tasks = n_tasks
        self.masked = masked
        self.gate_sizes = dict(gate_sizes)
        self.gates = nn.ModuleDict({name: Gates(n_tasks, units) for name, units in gate_sizes.items()}) \
            if masked else nn.ModuleDict()
        self.s = 1.0
        self._needs_id: bool | None = None
        self.last_gates: dict[str, torch.Tensor] = {}
        self._head_sizes = list(head_sizes)

    def make_head(self, in_features: int) -> None:
        self.head = MultiHead(in_features, self._head_sizes)

    # -- the attention of a task ------------------------------------------------------------
    def attention(self, task: int, s: float) -> dict[str, torch.Tensor]:
        """``a_l^t = sigmoid(s e_l^t)`` for every gate ``l`` (empty when the network is unmasked)."""
        return {name: gate(task, s) for name, gate in self.gates.items()}

    def forward(self, x: torch.Tensor, task=None) -> torch.Tensor:
        if self._needs_id is None:  # gates or per-task batch norm: one task id per batch
            self._needs_id = self.masked or any(isinstance(m, TaskBatchNorm) and m.mode == "task" for m in self.modules())
        if self._needs_id:
            t = _task_int(task)
            gates = self.attention(t, self.s)
            self.last_gates = gates
            return self.head(self.features(x, t, gates), t)
        return self.head(self.features(x, task, {}), task)

    def features(self, x: torch.Tensor, task, gates: dict[str, torch.Tensor]) -> torch.Tensor:
        raise NotImplementedError

    def gradient_map(self) -> dict[str, GradientGates]:
        raise NotImplementedError

    # -- what the training loop expects of a model -------------------------------------------
    def prepare_task(self, classes, scenario: str) -> None:
        if scenario != "task":
            raise ValueError("a HAT network has one output layer per task: it runs task-incremental benchmarks only")

    def opened_outputs(self) -> dict[str, torch.Tensor]:
        return {}

    def output_layers(self) -> list[nn.Linear]:
        return list(self.head.heads)

    def embeddings(self) -> dict[str, nn.Parameter]:
        """The task-embedding parameters by name (``gates.<gate>.embedding``)."""
        return {f"gates.{name}.embedding": gate.embedding for name, gate in self.gates.items()}


def _gate(h: torch.Tensor, gates: dict[str, torch.Tensor], name: str) -> torch.Tensor:
    """``h * a`` broadcast over the batch (and the spatial positions of a conv map)."""
    if name not in gates:
        return h
    a = gates[name]
    return h * (a.view(1, -1, 1, 1) if h.dim() == 4 else a.view(1, -1))


class HATMLP(HATNet):
    """Fully connected ReLU layers, each followed by dropout and its gate (the paper's MLP)."""

    def __init__(self, in_features: int, hidden: Sequence[int], n_tasks: int, head_sizes: Sequence[int],
                 masked: bool = True, dropout: float = 0.0):
        names = {f"fc{i + 1}": h for i, h in enumerate(hidden)}
        super().__init__(n_tasks, head_sizes, names, masked)
        widths = [in_features, *hidden]
        self.fcs = nn.ModuleList(nn.Linear(widths[i], widths[i + 1]) for i in range(len(hidden)))
        self.drop = nn.Dropout(dropout)
        self.make_head(widths[-1])

    def features(self, x, task, gates):
        h = x.flatten(1)
        for i, fc in enumerate(self.fcs):
            h = _gate(self.drop(torch.relu(fc(h))), gates, f"fc{i + 1}")
        return h

    def gradient_map(self):
        out = {}
        for i in range(len(self.fcs)):
            name, before = f"fc{i + 1}", (f"fc{i}" if i else None)
            out[f"fcs.{i}.weight"] = GradientGates(name, before)
            out[f"fcs.{i}.bias"] = GradientGates(name)
        return out


class HATAlexNet(HATNet):
    """The paper's AlexNet-like net (the report's Section 3.1).

    conv(64, k=size//8) - ReLU - dropout 0.2 - maxpool 2 - gate;
    conv(128, k=size//10) - ReLU - dropout 0.2 - maxpool 2 - gate;
    conv(256, k=2) - ReLU - dropout 0.5 - maxpool 2 - gate;
    fc(2048) - ReLU - dropout 0.5 - gate; fc(2048) - ReLU - dropout 0.5 - gate; one head per task.
    ``width`` scales the channels and ``fc`` the dense layers (1 and 2048: the paper's).
    """

    def __init__(self, in_channels: int, image_size: int, n_tasks: int, head_sizes: Sequence[int],
                 masked: bool = True, width: float = 1.0, fc: int = 2048):
        channels = [max(1, round(64 * width)), max(1, round(128 * width)), max(1, round(256 * width))]
        kernels = [max(1, image_size // 8), max(1, image_size // 10), 2]
        super().__init__(n_tasks, head_sizes,
                         {"c1": channels[0], "c2": channels[1], "c3": channels[2], "fc1": fc, "fc2": fc}, masked)
        self.convs = nn.ModuleList()
        size, width_in = image_size, in_channels
        for c, k in zip(channels, kernels):
            self.convs.append(nn.Conv2d(width_in, c, k))
            size = (size - k + 1) // 2
            width_in = c
        if size < 1:
            raise ValueError(f"images of {image_size} pixels are too small for the AlexNet-like net")
        self.positions = size * size
        self.drops = nn.ModuleList([nn.Dropout(0.2), nn.Dropout(0.2), nn.Dropout(0.5)])
        self.fc1 = nn.Linear(channels[-1] * self.positions, fc)
        self.fc2 = nn.Linear(fc, fc)
        self.fc_drop = nn.Dropout(0.5)
        self.make_head(fc)

    def features(self, x, task, gates):
        h = x
        for i, (conv, drop) in enumerate(zip(self.convs, self.drops)):
            h = _gate(torch.max_pool2d(drop(torch.relu(conv(h))), 2), gates, f"c{i + 1}")
        h = h.flatten(1)
        h = _gate(self.fc_drop(torch.relu(self.fc1(h))), gates, "fc1")
        return _gate(self.fc_drop(torch.relu(self.fc2(h))), gates, "fc2")

    def gradient_map(self):
        out = {}
        for i in range(3):
            out[f"convs.{i}.weight"] = GradientGates(f"c{i + 1}", f"c{i}" if i else None)
            out[f"convs.{i}.bias"] = GradientGates(f"c{i + 1}")
        # fc1 reads the flattened c3 map: c3's channel gate repeats over its spatial positions
        out["fc1.weight"] = GradientGates("fc1", "c3", self.positions)
        out["fc1.bias"] = GradientGates("fc1")
        out["fc2.weight"] = GradientGates("fc2", "fc1")
        out["fc2.bias"] = GradientGates("fc2")
        return out


class Block(nn.Module):
    """A residual basic block: conv3x3 - BN - ReLU - gate g1 - conv3x3 - BN, plus the shortcut
    (identity, or conv1x1 - BN when the shape changes), then ReLU and gate g2."""

    def __init__(self, c_in: int, c_out: int, stride: int, n_tasks: int, bn: str):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = TaskBatchNorm(c_out, n_tasks, bn)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = TaskBatchNorm(c_out, n_tasks, bn)
        self.projects = stride != 1 or c_in != c_out
        if self.projects:
            self.shortcut = nn.Conv2d(c_in, c_out, 1, stride, bias=False)
            self.bn_sc = TaskBatchNorm(c_out, n_tasks, bn)

    def forward(self, x, task, gates, g1: str, g2: str):
        h = _gate(torch.relu(self.bn1(self.conv1(x), task)), gates, g1)
        h = self.bn2(self.conv2(h), task)
        skip = self.bn_sc(self.shortcut(x), task) if self.projects else x
        return _gate(torch.relu(h + skip), gates, g2)


class HATResNet(HATNet):
    """ResNet (He et al.) with HAT gates on every conv's output channels.

    ``widths=(64, 128, 256, 512), blocks=(2, 2, 2, 2)`` is ResNet-18 (its CIFAR form: a
    3x3 stem, no initial max-pool; 20 conv layers with a BN each, the report's count); the
    quick profile's stand-in is narrow and shallow, with a stride-2 stem (``stem_stride``) to
    halve the map on a CPU. ``bn``: ``"shared"`` or ``"task"``.
    """

    def __init__(self, in_channels: int, n_tasks: int, head_sizes: Sequence[int], masked: bool = True,
                 bn: str = "shared", widths: Sequence[int] = (64, 128, 256, 512),
                 blocks: Sequence[int] = (2, 2, 2, 2), stem_stride: int = 1):
        if len(widths) != len(blocks) or not widths:
            raise ValueError(f"one block count per stage: widths {widths}, blocks {blocks}")
        names: dict[str, int] = {"stem": widths[0]}
        plan = []
        c_in = widths[0]
        for stage, (w, n) in enumerate(zip(widths, blocks)):
            for b in range(n):
                stride = 2 if stage > 0 and b == 0 else 1
                key = f"s{stage + 1}b{b + 1}"
                names[f"{key}_1"] = w
                names[f"{key}_2"] = w
                plan.append((key, c_in, w, stride))
                c_in = w
        super().__init__(n_tasks, head_sizes, names, masked)
        self.bn_mode = bn
        self.stem = nn.Conv2d(in_channels, widths[0], 3, stem_stride, 1, bias=False)
        self.stem_bn = TaskBatchNorm(widths[0], n_tasks, bn)
        self.keys = [key for key, *_ in plan]
        self.blocks = nn.ModuleList(Block(ci, co, st, n_tasks, bn) for _, ci, co, st in plan)
        self.make_head(c_in)

    def features(self, x, task, gates):
        h = _gate(torch.relu(self.stem_bn(self.stem(x), task)), gates, "stem")
        for key, block in zip(self.keys, self.blocks):
            h = block(h, task, gates, f"{key}_1", f"{key}_2")
        return h.mean(dim=(2, 3))

    def gradient_map(self):
        out = {"stem.weight": GradientGates("stem")}
        before = "stem"
        shared_bn = self.bn_mode == "shared"
        if shared_bn:  # a shared BN's scale and shift are gated like biases; per-task ones belong to their task
            out.update({f"stem_bn.norms.0.{p}": GradientGates("stem") for p in ("weight", "bias")})
        for i, (key, block) in enumerate(zip(self.keys, self.blocks)):
            g1, g2 = f"{key}_1", f"{key}_2"
            out[f"blocks.{i}.conv1.weight"] = GradientGates(g1, before)
            out[f"blocks.{i}.conv2.weight"] = GradientGates(g2, g1)
            norms = [("bn1", g1), ("bn2", g2)]
            if block.projects:
                out[f"blocks.{i}.shortcut.weight"] = GradientGates(g2, before)
                norms.append(("bn_sc", g2))
            if shared_bn:
                for bn, gate in norms:
                    out.update({f"blocks.{i}.{bn}.norms.0.{p}": GradientGates(gate) for p in ("weight", "bias")})
            before = g2
        return out


HAT_ARCHITECTURES = ("mlp", "alexnet", "resnet")


def build_hat_model(benchmark, arch: str = "mlp", *, masked: bool = True, seed: int | None = None,
                    hidden: Sequence[int] = (400, 400), dropout: float = 0.0, bn: str = "shared",
                    widths: Sequence[int] = (64, 128, 256, 512), blocks: Sequence[int] = (2, 2, 2, 2),
                    stem_stride: int = 1, width: float = 1.0, fc: int = 2048) -> HATNet:
    """A gated (``masked``) or plain network for a task-incremental ``benchmark``.

    ``arch``: ``"mlp"`` (``hidden``, ``dropout``), ``"alexnet"`` (``width``, ``fc``) or
    ``"resnet"`` (``widths``, ``blocks``, ``bn``, ``stem_stride``). With ``seed`` the initial weights come
    from that seed; the same seed gives the same weights masked or not, except the gates.
    """
    if arch not in HAT_ARCHITECTURES:
        raise ValueError(f"unknown HAT architecture {arch!r}; choose one of: {', '.join(HAT_ARCHITECTURES)}")
    if benchmark.scenario != "task":
        raise ValueError(f"HAT networks are task-incremental (one head per task); the benchmark is {benchmark.scenario}")
    if seed is not None:
        torch.manual_seed(seed)
    shape = tuple(benchmark.input_shape)
    n_tasks, heads = len(benchmark), benchmark.head_sizes
    if arch == "mlp":
        return HATMLP(math.prod(shape), hidden, n_tasks, heads, masked, dropout)
    if len(shape) != 3:
        raise ValueError(f"the conv nets take (channels, height, width) images, got inputs of shape {shape}")
    channels, size = shape[0], shape[-1]
    if arch == "alexnet":
        return HATAlexNet(channels, size, n_tasks, heads, masked, width, fc)
    return HATResNet(channels, n_tasks, heads, masked, bn, widths, blocks, stem_stride)
