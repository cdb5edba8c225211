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

:class:`PNNConv` has **convolutional** columns, as the paper's (its Pong columns are the A3C network,
two strided conv layers and one dense layer, no pooling). Each column is a 3x3 convolution of stride 2
(padding 1: it halves the image) and a ReLU per entry of ``channels``, then a dense layer of ``fc``
units and the head. The laterals follow Section 2,
"Adapters": "for convolutional layers, dimensionality reduction is performed by 1x1 convolutions".
Into conv layer ``i`` (every one after the first):

    h_i^(k) = relu( W_i^(k) * h_{i-1}^(k) + U_i^(k) * relu( V_i^(k) * (alpha_i^(k) h_{i-1}^(<k)) ) )

with ``*`` a convolution, ``V`` a 1x1 convolution from the ``k`` earlier columns' channels down to one
column's (``c_{i-1}``), and ``U`` a convolution of the layer's own kernel (3x3, stride 2, padding 1)
to ``c_i`` channels, so its output has the layer's size. Into the dense layer (it reads the last conv layer, still an image) ``V`` is the same 1x1
reduction and ``U`` a dense map of the flattened result; into the head the dense adapter above.
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


class Progressive(nn.Module):
    """What both progressive networks share: ``columns`` (one per task), ``forward(x, task)`` running
    columns ``0..task``, :meth:`activate`, the parameter counts and the loop's model interface.
    A subclass builds ``columns`` and says how an input batch enters them (:meth:`prepare_input`)."""

    head_sizes: list[int]
    columns: nn.ModuleList

    def prepare_input(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    @property
    def n_columns(self) -> int:
        return len(self.columns)

    # -- the forward pass -------------------------------------------------------------------
    def column_outputs(self, x: torch.Tensor, task: int) -> torch.Tensor:
        """Task ``task``'s logits: columns ``0..task`` in order, each reading the earlier ones."""
        if not 0 <= task < self.n_columns:
            raise ValueError(f"task {task} has no column (the network has {self.n_columns})")
        x = self.prepare_input(x)
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


class PNNMLP(Progressive):
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

    def prepare_input(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)
        if x.shape[1] != self.in_features:
            raise ValueError(f"the columns read {self.in_features} input features, the batch has {x.shape[1]}")
        return x


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


# ----------------------------------------------------------------------- convolutional columns


def conv_geometry(in_shape: Sequence[int], channels: Sequence[int]) -> list[tuple[int, int, int]]:
    """``(channels, height, width)`` of the input and of every conv layer's output.

    Each conv layer (3x3, stride 2, padding 1) halves the size, rounding up; an image smaller than
    ``2^L x 2^L`` for ``L`` conv layers (the last layers would see a single pixel) is refused with the
    smallest size that fits.
    """
    if len(in_shape) != 3:
        raise ValueError(f"convolutional columns read images C x H x W; the input shape is {tuple(in_shape)}")
    if not channels:
        raise ValueError("a convolutional PNN column needs at least one conv layer")
    c, h, w = (int(v) for v in in_shape)
    smallest = 2 ** len(channels)
    if h < smallest or w < smallest:
        raise ValueError(f"images of {h}x{w} are too small for {len(channels)} conv layers of stride 2: "
                         f"they need at least {smallest}x{smallest}")
    shapes = [(c, h, w)]
    for out in channels:
        h, w = (h + 1) // 2, (w + 1) // 2
        shapes.append((int(out), h, w))
    return shapes


class ConvAdapter(nn.Module):
    """``U * relu(V * (alpha h^(<k)))`` for a layer reading a conv layer (Section 2, "Adapters").

    ``V`` is a 1x1 convolution reducing the ``k`` earlier columns' channels to one column's
    (``in_channels``); ``U`` is the receiving layer's own kernel: a 3x3 convolution (padding 1) to
    ``out`` channels for a conv layer (3x3, stride 2, padding 1, as the layer itself), or, with ``dense_from`` (the reduced map's ``H x W``), a dense
    layer from the flattened map to ``out`` units for the column's dense layer.
    """

    def __init__(self, earlier_channels: int, in_channels: int, out: int, dense_from: tuple[int, int] | None = None):
        super().__init__()
        choice = int(torch.randint(len(ALPHA_CHOICES), ()))
        self.alpha = nn.Parameter(torch.tensor(ALPHA_CHOICES[choice]))
        self.V = nn.Conv2d(earlier_channels, in_channels, kernel_size=1)
        if dense_from is None:
            self.U: nn.Module = nn.Conv2d(in_channels, out, kernel_size=3, stride=2, padding=1, bias=False)
        else:
            self.U = nn.Sequential(nn.Flatten(), nn.Linear(in_channels * dense_from[0] * dense_from[1], out, bias=False))

    def forward(self, lateral: torch.Tensor) -> torch.Tensor:
        return self.U(torch.relu(self.V(self.alpha * lateral)))


class ConvColumn(nn.Module):
    """One convolutional column: ``len(channels)`` conv layers (3x3, stride 2, ReLU), a dense
    layer of ``fc`` units (ReLU) and the head; for column ``k > 0`` one adapter into every layer but
    the first (conv adapters into conv and dense layers, :class:`Adapter` into the head)."""

    def __init__(self, index: int, in_shape: Sequence[int], channels: Sequence[int], fc: int, n_outputs: int):
        super().__init__()
        self.index = index
        shapes = conv_geometry(in_shape, channels)
        self.n_conv = len(channels)
        convs = [nn.Conv2d(shapes[i][0], shapes[i + 1][0], kernel_size=3, stride=2, padding=1)
                 for i in range(self.n_conv)]
        c, h, w = shapes[-1]
        self.layers = nn.ModuleList([*convs, nn.Linear(c * h * w, fc), nn.Linear(fc, n_outputs)])
        adapters: list[nn.Module] = []
        if index > 0:
            # adapters[i - 1] feeds layer i: it reads layer i - 1 (shapes[i]) of columns < index
            adapters += [ConvAdapter(index * shapes[i][0], shapes[i][0], shapes[i + 1][0]) for i in range(1, self.n_conv)]
            adapters.append(ConvAdapter(index * c, c, fc, dense_from=(h, w)))
            adapters.append(Adapter(index * fc, fc, n_outputs))
        self.adapters = nn.ModuleList(adapters)

    def forward(self, x: torch.Tensor, earlier: list[list[torch.Tensor]]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The logits and the hidden activations (the conv maps, then the dense layer)."""
        h = x
        hiddens: list[torch.Tensor] = []
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            z = layer(h.flatten(1) if i == self.n_conv else h)
            if i > 0 and self.index > 0:
                z = z + self.adapters[i - 1](torch.cat([column[i - 1] for column in earlier], dim=1))
            if i < last:
                h = torch.relu(z)
            else:
                h = z
            if i < last:
                hiddens.append(h)
        return h, hiddens


class PNNConv(Progressive):
    """A progressive network of convolutional columns, one per task (the paper's kind of column)."""

    def __init__(self, in_shape: Sequence[int], channels: Sequence[int], fc: int, head_sizes: Sequence[int]):
        super().__init__()
        conv_geometry(in_shape, channels)  # refuses a bad shape before building anything
        self.in_shape = tuple(int(v) for v in in_shape)
        self.channels = [int(c) for c in channels]
        self.fc = int(fc)
        self.head_sizes = [int(k) for k in head_sizes]
        self.columns = nn.ModuleList(ConvColumn(k, self.in_shape, self.channels, self.fc, n)
                                     for k, n in enumerate(self.head_sizes))
        self.active = 0

    def prepare_input(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or tuple(x.shape[1:]) != self.in_shape:
            raise ValueError(f"the convolutional columns read batches N x {' x '.join(map(str, self.in_shape))}; "
                             f"the batch is {' x '.join(map(str, x.shape))}")
        return x


class ConvBody(nn.Module):
    """A lone convolutional column without head or laterals (``out_features = fc``): the transfer
    experiment's baselines, the same layers as a first column of :class:`PNNConv`."""

    def __init__(self, in_shape: Sequence[int], channels: Sequence[int], fc: int):
        super().__init__()
        column = ConvColumn(0, in_shape, channels, fc, 1)
        self.layers = nn.ModuleList(list(column.layers)[:-1])
        self.n_conv = column.n_conv
        self.out_features = int(fc)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x
        for i, layer in enumerate(self.layers):
            h = torch.relu(layer(h.flatten(1) if i == self.n_conv else h))
        return h


def conv_parameter_count(in_shape: Sequence[int], channels: Sequence[int], fc: int, head_sizes: Sequence[int],
                         t: int) -> int:
    """The closed form of :meth:`PNNConv.parameters_used`: parameters of ``t`` convolutional columns.

    With channels ``c_0 = C, c_1..c_L`` and the last map ``c_L x h x w`` (:func:`conv_geometry`),
    column ``k`` (from 0) has its layers ``sum_i (9 c_{i-1} c_i + c_i) + (c_L h w) fc + fc + fc n_k + n_k``
    and, for ``k > 0``, its adapters: into conv layer ``i >= 2``, ``1 + k c_{i-1} c_{i-1} + c_{i-1}``
    (alpha and the 1x1 reduction V) ``+ 9 c_{i-1} c_i`` (U); into the dense layer
    ``1 + k c_L^2 + c_L + (c_L h w) fc``; into the head ``1 + k fc^2 + fc + fc n_k``. The V terms
    grow with ``k``: quadratic in ``t``, as for MLP columns.
    """
    shapes = conv_geometry(in_shape, channels)
    c = [s[0] for s in shapes]
    flat = c[-1] * shapes[-1][1] * shapes[-1][2]
    total = 0
    for k in range(t):
        n = head_sizes[k]
        total += sum(9 * c[i - 1] * c[i] + c[i] for i in range(1, len(c))) + flat * fc + fc + fc * n + n
        if k > 0:
            total += sum(1 + k * c[i - 1] ** 2 + c[i - 1] + 9 * c[i - 1] * c[i] for i in range(2, len(c)))
            total += 1 + k * c[-1] ** 2 + c[-1] + flat * fc
            total += 1 + k * fc ** 2 + fc + fc * n
    return total


#: The convolutional column of ``--arch pnn-conv`` (two conv layers of 16 and 32 channels, 64 dense units).
CONV_COLUMN = {"channels": (16, 32), "fc": 64}


def build_pnn_model(benchmark, *, hidden: Sequence[int] = (100, 100), seed: int | None = None, column: str = "mlp",
                    channels: Sequence[int] | None = None, fc: int | None = None) -> Progressive:
    """A progressive network for a task-incremental ``benchmark``: one column per task.

    ``column="mlp"``: MLP columns of ``hidden`` units (:class:`PNNMLP`); ``column="conv"``:
    convolutional columns of ``channels`` and ``fc`` (:class:`PNNConv`, defaults :data:`CONV_COLUMN`;
    ``hidden`` is not used).
    """
    if column not in ("mlp", "conv"):
        raise ValueError(f"unknown PNN column {column!r}; choose 'mlp' or 'conv'")
    if benchmark.scenario != "task":
        raise ValueError(f"a progressive network is task-incremental (one column and head per task); "
                         f"the benchmark is {benchmark.scenario}")
    if seed is not None:
        torch.manual_seed(seed)
    if column == "conv":
        return PNNConv(benchmark.input_shape, channels or CONV_COLUMN["channels"], fc or CONV_COLUMN["fc"],
                       benchmark.head_sizes)
    return PNNMLP(math.prod(benchmark.input_shape), hidden, benchmark.head_sizes)
