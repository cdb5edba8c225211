"""Progressive neural networks (Rusu, Rabinowitz, Desjardins, Soyer, Kirkpatrick, Kavukcuoglu,
Pascanu and Hadsell, 2016).

Each task gets a new column, initialised at random; the columns of earlier tasks are frozen and
the new one reads their hidden layers through lateral adapters (Eq. 2; the network is
:mod:`clutils.models_pnn`). Task ``t`` is answered by column ``t`` with its own head.

The strategy only decides which column trains: before task ``t`` it makes column ``t`` the only
one with ``requires_grad=True`` (:meth:`clutils.models_pnn.PNNMLP.activate`). The loop builds
the optimiser after ``before_task`` when ``reset_optimizer`` is true (the PNN recipe), so the
optimiser holds column ``t`` only: no earlier parameter receives a gradient or an optimiser
update (not even Adam's or weight decay's), and every earlier task's outputs stay
**bit-identical**. Backward transfer is exactly 0 by construction, the price is a network that
grows with every task: quadratically, because column ``k``'s adapters read ``k`` earlier columns.
"""
from __future__ import annotations

import torch

from .base import Strategy
from .registry import register


@register
class PNN(Strategy):
    """One frozen column per past task, a new column with lateral adapters for the current one.

    Needs a network of :mod:`clutils.models_pnn` (``--arch pnn-mlp``, or ``pnn-conv`` for the paper's
    convolutional columns) with at least one column
    per task, a task-incremental benchmark, and a fresh optimiser every task
    (``TrainConfig.reset_optimizer=True``, as in the PNN recipe).
    """

    name = "pnn"
    defaults: dict = {}
    scenarios = ("task",)
    #: The network the command line and the strategy matrix test build for it.
    model_arch = "pnn-mlp"

    def setup(self, model, benchmark) -> None:
        if not hasattr(model, "activate") or not hasattr(model, "columns"):
            raise TypeError("PNN needs a progressive network: clutils.models_pnn.build_pnn_model(benchmark) "
                            "(or --arch pnn-mlp on the command line)")
        if benchmark.scenario != "task":
            raise ValueError(f"PNN is task-incremental (task t is answered by column t, so the task id is "
                             f"needed at test time); the benchmark is {benchmark.scenario}-incremental")
        if model.n_columns < len(benchmark):
            raise ValueError(f"the progressive network has {model.n_columns} columns for {len(benchmark)} tasks")
        super().setup(model, benchmark)
        model.activate(0)  # before the loop builds the first optimiser: it holds column 0 only
        self._start: list[torch.Tensor] = []

    def before_task(self, model, task) -> None:
        model.activate(task.index)
        self._start = [p.detach().clone() for p in model.columns[task.index].layers.parameters()]

    def after_task(self, model, task, data) -> None:
        # The optimiser must have been rebuilt for the new column; if it was kept across tasks it
        # holds column 0 only and the new column never moves: say so instead of training nothing.
        moved = any(not torch.equal(p, q) for p, q in zip(model.columns[task.index].layers.parameters(), self._start))
        if not moved:
            raise RuntimeError(f"column {task.index + 1} did not change while task {task.index + 1} trained: "
                               "the optimiser was kept from an earlier task. Train PNN with "
                               "TrainConfig(reset_optimizer=True) (its recipe does)")
        self._start = []
