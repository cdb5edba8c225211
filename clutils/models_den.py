"""The network of DEN (Yoon, Yang, Lee and Hwang, ICLR 2018): an MLP that can grow, in fixed shapes.

DEN adds units to a layer when a task needs capacity (dynamic expansion, Section 3
"Dynamic network expansion") and copies units that drifted too far (Section 3 "Network
split/duplication"). The authors' TensorFlow code rebuilds its graph with larger
variables each time. Here every layer is allocated once at its maximum width
(``capacity``) and each unit carries

* ``active_<l>``: whether the unit exists (reserved units are off: weights zero, output masked);
* ``birth_<l>``: the task (from 0) at which the unit was added (-1 for a reserved unit).

Growing a layer switches reserved units on (:meth:`DENMLP.activate`); removing a dead
unit switches it off again (:meth:`DENMLP.deactivate`). Shapes never change, so the
optimiser, the checkpoint and the training loop stay valid.

**Timestamped inference** (Section 3, "Timestamped inference"): task ``t`` uses only the
units born at or before ``t``,

    h_l = relu(W_l h_{l-1} + b_l) * m_l^t,    m_{l,i}^t = [active_{l,i} and birth_{l,i} <= t],

so a unit added for a later task contributes exactly zero to an earlier task's output
(:meth:`DENMLP.unit_mask`). One output layer per task (task-incremental, as in the paper).
The size of the network is the number of its non-zero parameters between active units
(:meth:`DENMLP.n_parameters`): DEN trains with L1 sparsity, and the paper counts capacity so.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

from .models import MultiHead


class CapacityError(RuntimeError):
    """A layer has no reserved unit left to activate (raise ``capacity``)."""


def _task_int(task) -> int:
    if task is None:
        raise ValueError("a DEN network needs the task id (task-incremental)")
    if isinstance(task, torch.Tensor):
        values = torch.unique(task)
        if len(values) != 1:
            raise ValueError("one task id per call of _task_int")
        return int(values.item())
    return int(task)


class DENMLP(nn.Module):
    """Fully connected ReLU layers of width ``hidden`` (growable up to ``capacity``), one head per task.

    ``hidden``: the units active at the start (born at task 0); ``capacity``: the width
    allocated per layer (at least ``hidden``).
    """

    def __init__(self, in_features: int, hidden: Sequence[int], capacity: Sequence[int], n_tasks: int,
                 head_sizes: Sequence[int]):
        super().__init__()
        hidden, capacity = [int(h) for h in hidden], [int(c) for c in capacity]
        if not hidden or len(hidden) != len(capacity):
            raise ValueError(f"one capacity per hidden layer: hidden {hidden}, capacity {capacity}")
        if any(h < 1 or c < h for h, c in zip(hidden, capacity)):
            raise ValueError(f"every layer needs 1 <= hidden <= capacity, got hidden {hidden}, capacity {capacity}")
        self.in_features = in_features
        self.capacity = capacity
        widths = [in_features, *capacity]
        self.fcs = nn.ModuleList(nn.Linear(widths[i], widths[i + 1]) for i in range(len(capacity)))
        self.head = MultiHead(capacity[-1], head_sizes)
        for l, (h, c) in enumerate(zip(hidden, capacity)):
            active = torch.zeros(c, dtype=torch.bool)
            active[:h] = True
            birth = torch.full((c,), -1, dtype=torch.long)
            birth[:h] = 0
            self.register_buffer(f"active_{l}", active)
            self.register_buffer(f"birth_{l}", birth)
        with torch.no_grad():
            for l in range(len(capacity)):
                self._clear(l, ~self.active(l))

    # -- units ---------------------------------------------------------------------------------
    @property
    def n_layers(self) -> int:
        return len(self.fcs)

    def active(self, layer: int) -> torch.Tensor:
        return getattr(self, f"active_{layer}")

    def birth(self, layer: int) -> torch.Tensor:
        return getattr(self, f"birth_{layer}")

    def unit_mask(self, layer: int, task: int) -> torch.Tensor:
        """``m_l^t``: the units of ``layer`` that task ``task`` uses (active and born at or before it)."""
        return self.active(layer) & (self.birth(layer) <= task)

    def outgoing(self, layer: int) -> list[torch.Tensor]:
        """The weight matrices that read ``layer``'s units (the next layer's, or every head)."""
        if layer + 1 < self.n_layers:
            return [self.fcs[layer + 1].weight]
        return [h.weight for h in self.head.heads]

    def _clear(self, layer: int, units: torch.Tensor) -> None:
        """Zero the incoming weights, bias and outgoing weights of ``units`` (a bool mask or indices)."""
        self.fcs[layer].weight[units] = 0
        self.fcs[layer].bias[units] = 0
        for w in self.outgoing(layer):
            w[:, units] = 0

    @torch.no_grad()
    def activate(self, layer: int, n: int, task: int) -> torch.Tensor:
        """Switch on ``n`` reserved units of ``layer`` born at ``task``; returns their indices.

        Incoming weights are drawn as PyTorch's default ``nn.Linear`` initialisation
        (uniform in +-1/sqrt(fan_in)); outgoing weights start at zero.
        """
        free = torch.nonzero(~self.active(layer)).flatten()[:n]
        if len(free) < n:
            raise CapacityError(f"layer {layer + 1} has {len(free)} reserved units left, {n} needed: "
                                f"raise its capacity ({self.capacity[layer]})")
        fan_in = self.fcs[layer].weight.shape[1]
        bound = 1 / math.sqrt(fan_in)
        w = self.fcs[layer].weight
        w[free] = torch.empty(len(free), fan_in, device=w.device).uniform_(-bound, bound)
        self.fcs[layer].bias[free] = torch.empty(len(free), device=w.device).uniform_(-bound, bound)
        for out in self.outgoing(layer):
            out[:, free] = 0
        self.active(layer)[free] = True
        self.birth(layer)[free] = task
        return free

    @torch.no_grad()
    def deactivate(self, layer: int, units: torch.Tensor) -> None:
        """Remove ``units`` of ``layer`` (indices): weights zeroed, back to reserved."""
        self._clear(layer, units)
        self.active(layer)[units] = False
        self.birth(layer)[units] = -1

    def n_units(self) -> list[int]:
        """Active units per hidden layer."""
        return [int(self.active(l).sum()) for l in range(self.n_layers)]

    @torch.no_grad()
    def n_parameters(self, tasks: int) -> int:
        """Non-zero weights and biases between active units, with the heads of the first ``tasks`` tasks."""
        total = 0
        before = torch.ones(self.in_features, dtype=torch.bool, device=self.active(0).device)
        for l, fc in enumerate(self.fcs):
            rows = self.active(l)
            total += int((fc.weight[rows][:, before] != 0).sum()) + int((fc.bias[rows] != 0).sum())
            before = rows
        for head in list(self.head.heads)[:tasks]:
            total += int((head.weight[:, before] != 0).sum()) + int((head.bias != 0).sum())
        return total

    # -- forward -------------------------------------------------------------------------------
    def features(self, x: torch.Tensor, task: int) -> torch.Tensor:
        h = x.flatten(1)
        for l, fc in enumerate(self.fcs):
            h = torch.relu(fc(h)) * self.unit_mask(l, task).to(h.dtype)
        return h

    def forward(self, x: torch.Tensor, task=None) -> torch.Tensor:
        if isinstance(task, torch.Tensor) and task.numel() > 1 and len(torch.unique(task)) > 1:
            out = x.new_full((len(x), max(self.head.sizes)), -1e9)
            for t in torch.unique(task).tolist():
                rows = task == t
                out[rows, : self.head.sizes[t]] = self.head(self.features(x[rows], t), t)
            return out
        t = _task_int(task)
        return self.head(self.features(x, t), t)

    # -- what the training loop expects of a model ----------------------------------------------
    def prepare_task(self, classes, scenario: str) -> None:
        if scenario != "task":
            raise ValueError("a DEN network has one output layer per task: it runs task-incremental benchmarks only")

    def opened_outputs(self) -> dict[str, torch.Tensor]:
        return {}

    def output_layers(self) -> list[nn.Linear]:
        return list(self.head.heads)


def build_den_model(benchmark, hidden: Sequence[int] = (312, 128), capacity: Sequence[int] | None = None,
                    seed: int | None = None) -> DENMLP:
    """A DEN network for a task-incremental ``benchmark``.

    ``hidden``: the starting widths (the authors' MNIST code: 312 and 128); ``capacity``: the
    widths allocated (default: four times ``hidden``, room for expansion and splits).
    """
    if benchmark.scenario != "task":
        raise ValueError(f"DEN networks are task-incremental (one head per task); the benchmark is {benchmark.scenario}")
    if seed is not None:
        torch.manual_seed(seed)
    capacity = capacity if capacity is not None else [4 * h for h in hidden]
    return DENMLP(math.prod(tuple(benchmark.input_shape)), hidden, capacity, len(benchmark), benchmark.head_sizes)
