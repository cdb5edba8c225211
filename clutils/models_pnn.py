"""Progressive neural networks: one MLP column per task, with lateral adapters (Rusu et al., 2016).

Column ``k`` is an MLP ``in -> hidden[0] -> ... -> hidden[-1] -> head_k``. Its layer ``i``
(every hidden layer after the first, and the output layer) also reads layer ``i - 1`` of every
earlier column ``j < k`` through the paper's non-linear adapter (Section 2, "Adapters", Eq. 2
for dense layers):

    h_i^(k) = f( W_i^(k) h_{i-1}^(k) + U_i^(k) relu( V_i^(k) (alpha_i^(k) h_{i-1}^(<k)) ) )

``h_{i-1}^(<k)`` is the concatenation of the earlier columns' layer ``i - 1``; ``alpha`` a learned
scalar (initialised at random among 1, 0.1 and 0.01: the paper's "random small value");
``V`` projects it onto as many units as one column's layer ``i - 1`` has (the paper's
``n_{i-1}``), so the adapter has one hidden layer; ``U`` maps them to layer ``i``. ``f`` is ReLU
in the hidden layers, the identity at the output (the logits). The first hidden layer reads the
input only: the input is shared, there is nothing lateral to read.

The network is built with one column per task of the benchmark; the strategy
(:class:`clutils.strategies.pnn.PNN`) makes column ``t`` the only trainable one while task ``t``
trains (:meth:`PNNMLP.activate`). Task ``t`` is answered by column ``t``, which reads only columns
``<= t``: training later columns cannot change it. Task-incremental only (one head per column).
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

from .models import MASKED_LOGIT

#: The adapter's scale alpha starts at one of these (drawn per adapter from the model's seed).
ALPHA_CHOICES = (1.0, 0.1, 0.01)


class Adapter(nn.Module):
    """``U relu(V (alpha h^(<k)))``: the lateral input of one layer of one column (Eq. 2)."""

    def __init__(self, in_features: int, hidden: int, out_features: int):
        super().__init__()
        choice = int(torch.randint(len(ALPHA_CHOICES), ()))
        self.alpha = nn.Parameter(torch.tensor(ALPHA_CHOICES[choice]))
        self.V = nn.Linear(in_features, hidden)
        self.U = nn.Linear(hidden, out_features, bias=False)

    def forward(self, lateral: torch.Tensor) -> torch.Tensor:
        return self.U(torch.relu(self.V(self.alpha * lateral)))


class Column(nn.Module):
    """One column: its own layers ``W_i`` and, for column ``k > 0``, one adapter per layer ``i >= 2``."""

    def __init__(self, index: int, in_features: int, hidden: Sequence[int], n_outputs: int):
        super().__init__()
        self.index = index
        widths = [in_features, *hidden, n_outputs]
        self.layers = nn.ModuleList(nn.Linear(widths[i], widths[i + 1]) for i in range(len(widths) - 1))
        # adapters[i - 1] feeds layer i (i >= 1, counted from 0): it reads layer i - 1 of columns < index.
        self.adapters = nn.ModuleList(
            Adapter(index * widths[i], widths[i], widths[i + 1]) for i in range(1, len(widths) - 1)
        ) if index > 0 else nn.ModuleList()

    def forward(self, x: torch.Tensor, earlier: list[list[torch.Tensor]]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The logits and the hidden activations; ``earlier[j]`` holds column ``j``'s hidden activations."""
        h = x
        hiddens: list[torch.Tensor] = []
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            z = layer(h)
            if i > 0 and self.index > 0:
                z = z + self.adapters[i - 1](torch.cat([column[i - 1] for column in earlier], dim=1))
            if i < last:
                h = torch.relu(z)
                hiddens.append(h)
            else:
                h = z
        return h, hiddens


class PNNMLP(nn.Module):
    """A progressive network of MLP columns, one per task; ``forward(x, task)`` runs columns ``0..task``."""

    def __init__(self, in_features: int, hidden: Sequence[int], head_sizes: Sequence[int]):
        super().__init__()
        if not hidden:
            raise ValueError("a PNN column needs at least one hidden layer (the laterals connect hidden layers)")
        self.in_features = int(in_features)
        self.hidden = [int(h) for h in hidden]
        self.head_sizes = [int(k) for k in head_sizes]
        self.columns = nn.ModuleList(Column(k, in_features, hidden, n) for k, n in enumerate(head_sizes))
        self.active = 0

    @property
    def n_columns(self) -> int:
        return len(self.columns)

    # -- the forward pass -------------------------------------------------------------------
    def column_outputs(self, x: torch.Tensor, task: int) -> torch.Tensor:
        """Task ``task``'s logits: columns ``0..task`` in order, each reading the earlier ones."""
        if not 0 <= task < self.n_columns:
            raise ValueError(f"task {task} has no column (the network has {self.n_columns})")
        x = x.flatten(1)
        earlier: list[list[torch.Tensor]] = []
        for k in range(task + 1):
            logits, hiddens = self.columns[k](x, earlier)
            earlier.append(hiddens)
        return logits

    def forward(self, x: torch.Tensor, task: int | torch.Tensor | None = None) -> torch.Tensor:
        if task is None:
            raise ValueError("a progressive network answers with the task's own column: it needs the task id "
                             "(task-incremental)")
        if isinstance(task, torch.Tensor):
            if task.numel() == 1:
                return self.column_outputs(x, int(task.reshape(()).item()))
            # one task id per sample (joint training): each task's rows through its own column
            out = x.new_full((len(x), max(self.head_sizes)), MASKED_LOGIT)
            for t in torch.unique(task).tolist():
                rows = task == t
                out[rows, : self.head_sizes[t]] = self.column_outputs(x[rows], t)
            return out
        return self.column_outputs(x, int(task))

    # -- growing: which column trains -----------------------------------------------------------
    def activate(self, task: int) -> None:
        """Make column ``task`` the only trainable one (earlier and later columns: ``requires_grad=False``)."""
        if not 0 <= task < self.n_columns:
            raise ValueError(f"task {task} has no column (the network has {self.n_columns})")
        for k, column in enumerate(self.columns):
            column.requires_grad_(k == task)
        self.active = task

    def column_parameters(self, k: int) -> int:
        """The number of parameters of column ``k`` (its layers, head and adapters)."""
        return sum(p.numel() for p in self.columns[k].parameters())

    def parameters_used(self, t: int) -> int:
        """Parameters of the first ``t`` columns: what a PNN holds after ``t`` tasks."""
        return sum(self.column_parameters(k) for k in range(t))

    # -- what the training loop expects of a model ----------------------------------------------
    def prepare_task(self, classes, scenario: str) -> None:
        if scenario != "task":
            raise ValueError("a progressive network has one column and head per task: it runs "
                             "task-incremental benchmarks only")

    def opened_outputs(self) -> dict[str, torch.Tensor]:
        return {}

    def output_layers(self) -> list[nn.Linear]:
        return [column.layers[-1] for column in self.columns]


def parameter_count(in_features: int, hidden: Sequence[int], head_sizes: Sequence[int], t: int) -> int:
    """The closed form of :meth:`PNNMLP.parameters_used`: parameters of ``t`` columns.

    With widths ``n_0 = in, n_1..n_L = hidden, n_{L+1} = head_k``, column ``k`` (from 0) has its
    layers ``sum_i (n_{i-1} n_i + n_i)`` and, for ``k > 0``, one adapter per layer ``i >= 2``:
    ``1`` (alpha) ``+ k n_{i-1} n_{i-1} + n_{i-1}`` (V, projecting the ``k`` earlier columns onto
    ``n_{i-1}`` units) ``+ n_{i-1} n_i`` (U). The V term grows with ``k``, so the total over
    ``t`` columns is quadratic in ``t``.
    """
    total = 0
    for k in range(t):
        widths = [in_features, *hidden, head_sizes[k]]
        total += sum(widths[i - 1] * widths[i] + widths[i] for i in range(1, len(widths)))
        if k > 0:
            total += sum(1 + k * widths[i - 1] ** 2 + widths[i - 1] + widths[i - 1] * widths[i]
                         for i in range(2, len(widths)))
    return total


def build_pnn_model(benchmark, *, hidden: Sequence[int] = (100, 100), seed: int | None = None) -> PNNMLP:
    """A progressive network for a task-incremental ``benchmark``: one column per task."""
    if benchmark.scenario != "task":
        raise ValueError(f"a progressive network is task-incremental (one column and head per task); "
                         f"the benchmark is {benchmark.scenario}")
    if seed is not None:
        torch.manual_seed(seed)
    return PNNMLP(math.prod(benchmark.input_shape), hidden, benchmark.head_sizes)
