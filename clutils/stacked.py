"""Stacked runs: K independent copies of a model trained in one pass (seeds and sweeps).

A small MLP's training step is dominated by per-operation overhead, not by
arithmetic: K copies of it cost little more than one when every layer is one
*batched* matrix product. :func:`stack_models` turns K models of the same
architecture (each built with its own seed, so each copy's initialisation is
exactly the single model's) into one :class:`StackedModel` whose parameters
carry a leading dimension K and keep the single model's names
(``body.layers.1.weight`` is ``K x out x in``); a linear layer is
``torch.baddbmm(b, x, W^T)`` on inputs of shape ``[K, B, ...]``.

:func:`fit_stacked` trains the copies together. Each copy has its own
benchmark (e.g. another seed's permutations) or shares one, its own data order
(the single loop's shuffling seed of its own run seed), its own strategy
instance and hyperparameters (a sweep of ALASSO's ``a`` is one run), and gets
its own :class:`~clutils.result.Result`. The step minimises

    sum_k mean_i CE(f_k(x_{k,i}), y_{k,i})          (each copy's gradient is its own)

with one Adam or SGD over the stacked parameters (both are elementwise, so a
copy's update is the single run's update).

Why a loop of its own, and how the strategies run unchanged. The one loop
(:func:`clutils.train.fit`) feeds a model ``[B, ...]`` batches and hands the
strategy the model; here every hook must see *one copy*. Each copy keeps its
original model as a *view*: its parameters are re-pointed at slice ``k`` of
the stacked parameters (same storage) and, at every step, its ``.grad`` at
slice ``k`` of the stacked gradient. The strategy's hooks run on that view
exactly as in a single run: SI's and ALASSO's path integrals, ALASSO's Omega,
the quadratic penalties' closed-form gradients (added in place into the
stacked ``.grad``), EWC's Fisher and MAS's importance (a per-copy pass over
the task's data, once per task). This loop reuses the one loop's pieces (the
optimiser, the shuffling seeds, the divergence check, the metrics) and adds
only the stacking: gathering each copy's batch by index, the summed loss, the
per-copy views and a batched evaluation.

What stacks (:func:`stack_problem` says why not otherwise):

* networks whose modules are linear layers, ReLU, dropout and flatten (the
  book's MLPs) with a single or a per-task head (task id per task, not per
  sample); conv nets do not (a grouped convolution would be needed);
* strategies known to be elementwise (:data:`STACKABLE_STRATEGIES`, or a class
  that sets ``stackable = True``) that change neither the batch nor the data nor evaluation
  (no ``training_data``, ``extend_batch``, ``before_step``, ``observe`` or
  ``before_eval``-family hooks, no restart) and whose penalty, if any, adds its
  own gradient (``applies_penalty_gradient``): naive, EWC, SI, MAS, ALASSO.
  Replay (a buffer per copy), joint and separate training, CWR/AR1 (head
  consolidation), HAT (gates and schedule), LwF (a penalty on the logits) and
  the generative replay raise :class:`StackingError`: run them one seed at a
  time (:func:`fit_copies` does that for you).

Exactness. Every elementwise operation (ReLU, Adam, SGD, the penalties' gradients,
the path integral, Omega) gives a copy bit-for-bit what the single run computes;
the matrix products do not necessarily: ``baddbmm`` over ``[K, B, in]`` and the
single model's ``addmm`` may split the sums over ``in`` differently (and
vectorise a different tail of a tensor), so a copy's weights may differ from the
single run's in the last bits, and those differences grow slowly over thousands
of steps. The test (``tests/test_stacked.py``) checks the accuracy matrices of a
stacked run against single runs to float tolerance (1e-5 on the weights after a
task, equal accuracies up to an occasional sample whose two top logits tie to
float precision). On this project's CPU build (one thread) the weights and accuracy matrices of a
stacked run came out bit-identical to the single runs' in every test (naive, EWC, SI, MAS, ALASSO,
widths 16 to 128): the batched product evidently sums in the single product's order there; a GPU
or another BLAS may not. Dropout draws other random numbers than a single run (one mask
over all copies): a run with dropout matches single runs in distribution only.
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .data.benchmarks import Benchmark
from .models import ContinualModel, MLP, MultiHead, SingleHead
from .result import Result
from .strategies.base import Batch, Strategy
from .train import (DIVERGENCE_CHECK_EVERY, PENALTY_SAMPLE_EVERY, TrainConfig, TrainingDivergedError,
                    _check_loss, _shuffle_seed, fit, make_optimizer, resolve_device, set_task_lr)

#: Hooks a strategy must not override to stack: they change the batch, the data or evaluation.
PER_SAMPLE_HOOKS = ("training_data", "extend_batch", "before_step", "observe", "before_eval",
                    "before_eval_task", "after_eval")
#: Strategies known to be elementwise per parameter (their state and hooks act on each weight alone).
#: Another strategy opts in with a class attribute ``stackable = True`` once it is checked against
#: single runs (``tests/test_stacked.py``); the hook rules below still apply to it.
STACKABLE_STRATEGIES = frozenset({"naive", "ewc", "si", "mas", "alasso"})
#: Modules a stacked network may contain (the book's MLPs and their heads).
STACKABLE_MODULES = (ContinualModel, MLP, MultiHead, SingleHead, nn.Sequential, nn.ModuleList, nn.Linear,
                     nn.ReLU, nn.Dropout, nn.Flatten)


class StackingError(ValueError):
    """The models or strategies cannot be trained as one stacked run."""


# ----------------------------------------------------------------------------- what stacks

def strategy_problem(strategy: Strategy) -> str | None:
    """Why ``strategy`` cannot run in a stacked run, or None if it can."""
    kind = type(strategy)
    if strategy.name not in STACKABLE_STRATEGIES and not getattr(kind, "stackable", False):
        return (f"strategy {strategy.name!r} is not known to be elementwise per parameter (it stacks: "
                f"{', '.join(sorted(STACKABLE_STRATEGIES))}, or a strategy that sets stackable = True)")
    overridden = [h for h in PER_SAMPLE_HOOKS if getattr(kind, h) is not getattr(Strategy, h)]
    if overridden:
        return (f"strategy {strategy.name!r} overrides {', '.join(overridden)} (it changes the batch, the data "
                "or evaluation per copy)")
    if kind.restarts_model:
        return f"strategy {strategy.name!r} restarts the model at every task"
    if kind.model_arch is not None:
        return f"strategy {strategy.name!r} needs its own network ({kind.model_arch})"
    if kind.penalty is not Strategy.penalty and not kind.applies_penalty_gradient:
        return (f"strategy {strategy.name!r} back-propagates its penalty through the network (it may depend on "
                "the logits)")
    return None


def model_problem(model: nn.Module) -> str | None:
    """Why ``model`` cannot be stacked, or None if it can."""
    for name, module in model.named_modules():
        if not isinstance(module, STACKABLE_MODULES):
            return (f"module {name or '(root)'} is a {type(module).__name__}; stacking supports MLP bodies "
                    "(Linear, ReLU, Dropout, Flatten) with a single or per-task head")
    return None


def stack_problem(model: nn.Module, strategy: Strategy) -> str | None:
    """Why this model and strategy cannot be stacked (None: they can)."""
    return strategy_problem(strategy) or model_problem(model)


# ----------------------------------------------------------------------------- the stacked network

class StackedLinear(nn.Module):
    """K linear layers, ``y_k = x_k W_k^T + b_k``, as one ``baddbmm`` on ``x`` of shape ``[K, B, in]``."""

    def __init__(self, layers: Sequence[nn.Linear]):
        super().__init__()
        self.weight = nn.Parameter(torch.stack([layer.weight.detach() for layer in layers]).clone())
        has_bias = layers[0].bias is not None
        self.bias = nn.Parameter(torch.stack([layer.bias.detach() for layer in layers]).clone()) if has_bias else None
        self.in_features, self.out_features = layers[0].in_features, layers[0].out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.bias is None:
            return torch.bmm(x, self.weight.transpose(1, 2))
        return torch.baddbmm(self.bias.unsqueeze(1), x, self.weight.transpose(1, 2))


class StackedFlatten(nn.Module):
    """``nn.Flatten`` of each copy: ``[K, B, ...] -> [K, B, features]``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(2)


class StackedModel(nn.Module):
    """K copies of one architecture in one module (see the module docstring).

    ``network`` is the first copy's module tree with every ``nn.Linear`` replaced by a
    :class:`StackedLinear` and every ``nn.Flatten`` by a :class:`StackedFlatten`, so the
    parameter names are the single model's. ``forward(x, task)`` takes ``[K, B, ...]``
    and returns ``[K, B, classes]``. ``views[k]`` is copy ``k``'s original model, its
    parameters sharing storage with slice ``k`` of the stacked ones.
    """

    def __init__(self, models: Sequence[nn.Module]):
        super().__init__()
        if not models:
            raise StackingError("stacking needs at least one model")
        for model in models:
            problem = model_problem(model)
            if problem:
                raise StackingError(problem)
        shapes = [[(n, tuple(p.shape)) for n, p in m.named_parameters()] for m in models]
        if any(s != shapes[0] for s in shapes[1:]):
            raise StackingError("the models to stack must have the same architecture (parameter names and shapes)")
        self.copies = len(models)
        network = copy.deepcopy(models[0])
        modules = [dict(m.named_modules()) for m in models]
        for name, module in list(network.named_modules()):
            if isinstance(module, nn.Linear):
                _replace(network, name, StackedLinear([mods[name] for mods in modules]))
            elif isinstance(module, nn.Flatten):
                _replace(network, name, StackedFlatten())
        self.network = network
        self.views = list(models)  # plain list: not submodules (their parameters are views)
        self._pairs = []  # per copy: (view parameter, stacked parameter)
        stacked = dict(network.named_parameters())
        for k, model in enumerate(models):
            pairs = []
            for name, p in model.named_parameters():
                p.data = stacked[name].data[k]  # the view shares the stacked storage
                pairs.append((p, stacked[name]))
            self._pairs.append(pairs)

    def forward(self, x: torch.Tensor, task: int | None = None) -> torch.Tensor:
        if isinstance(task, torch.Tensor):
            raise StackingError("a stacked model takes one task id per batch, not one per sample")
        return self.network(x, task)

    def prepare_task(self, classes, scenario: str) -> None:
        self.network.prepare_task(classes, scenario)
        for view in self.views:
            view.prepare_task(classes, scenario)

    def bind_gradients(self) -> None:
        """Point each view parameter's ``.grad`` at its slice of the stacked gradient."""
        for k, pairs in enumerate(self._pairs):
            for view, stacked in pairs:
                view.grad = None if stacked.grad is None else stacked.grad[k]

    def named_parameters(self, prefix: str = "", recurse: bool = True, remove_duplicate: bool = True):
        # The single model's names (no "network." prefix), so that a strategy could read them too.
        return self.network.named_parameters(prefix, recurse, remove_duplicate)


def _replace(root: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    parent._modules[child] = new


def stack_models(models: Sequence[nn.Module]) -> StackedModel:
    """One :class:`StackedModel` of ``models`` (moved to one device first)."""
    return StackedModel(models)


# ----------------------------------------------------------------------------- the copies

@dataclass
class Copy:
    """One copy of a stacked run: its model, benchmark, strategy, run seed and metadata."""

    model: nn.Module
    benchmark: Benchmark
    strategy: Strategy
    seed: int = 0
    meta: dict[str, Any] = field(default_factory=dict)


class _Data:
    """The copies' benchmarks, each stored once, and which one each copy reads (``which``)."""

    def __init__(self, copies: Sequence[Copy], device: torch.device):
        unique: dict[int, Benchmark] = {}
        for c in copies:
            unique.setdefault(id(c.benchmark), c.benchmark)
        keys = list(unique)
        self.benchmarks = [unique[k].to(device) for k in keys]
        self.which = torch.tensor([keys.index(id(c.benchmark)) for c in copies], device=device)
        self.of_copy = [self.benchmarks[i] for i in self.which.tolist()]
        first = self.benchmarks[0]
        for b in self.benchmarks[1:]:
            if (len(b) != len(first) or b.scenario != first.scenario or b.input_shape != first.input_shape
                    or any(len(t.train) != len(u.train) or len(t.test) != len(u.test)
                           for t, u in zip(b.tasks, first.tasks))):
                raise StackingError("the copies' benchmarks must have the same tasks, scenario and sizes")
        self.scenario = first.scenario

    def stacked(self, task: int, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        """``x [U, N, ...]`` and ``y [U, N]`` of ``task``'s ``split`` over the U distinct benchmarks."""
        parts = [getattr(b.tasks[task], split) for b in self.benchmarks]
        if len(parts) == 1:
            return parts[0].x.unsqueeze(0), parts[0].y.unsqueeze(0)
        return torch.stack([p.x for p in parts]), torch.stack([p.y for p in parts])


# ----------------------------------------------------------------------------- evaluation

@torch.no_grad()
def evaluate_stacked(model: StackedModel, data: _Data, batch_size: int = 2048,
                     confusion: bool = False) -> tuple[list[list[float]], list[list[list[int]]] | None]:
    """Every copy's accuracy on every task's test set (``[K][tasks]``), and its confusion matrix if asked."""
    was_training = model.training
    model.eval()
    K = model.copies
    accuracies: list[list[float]] = [[] for _ in range(K)]
    first = data.benchmarks[0]
    C = first.n_classes
    matrices = [None] * K
    for task in first.tasks:
        x, y = data.stacked(task.index, "test")
        arg = task.index if data.scenario == "task" else None
        pred = torch.cat([model(x[:, i:i + batch_size][data.which], arg).argmax(-1)
                          for i in range(0, x.shape[1], batch_size)], dim=1)
        labels = y[data.which]
        for k, value in enumerate((pred == labels).float().mean(1).tolist()):
            accuracies[k].append(value)
        if confusion:
            for k in range(K):
                bench = data.of_copy[k]
                true = bench.to_dataset_labels(bench.tasks[task.index], labels[k])
                guess = bench.to_dataset_labels(bench.tasks[task.index], pred[k])
                counts = torch.bincount(true * C + guess, minlength=C * C)
                matrices[k] = counts if matrices[k] is None else matrices[k] + counts
    model.train(was_training)
    return accuracies, ([m.reshape(C, C).tolist() for m in matrices] if confusion else None)


# ----------------------------------------------------------------------------- training

def _train_task(model: StackedModel, data: _Data, copies: Sequence[Copy], task_index: int,
                optimizer: torch.optim.Optimizer, config: TrainConfig) -> tuple[list[list[float]], list[list[float]]]:
    """One task for every copy; returns per copy the mean task loss and mean penalty of each epoch."""
    K = model.copies
    x, y = data.stacked(task_index, "train")
    which = data.which.unsqueeze(1)
    n = y.shape[1]
    device = y.device
    arg = task_index if data.scenario == "task" else None
    steps = math.ceil(n / config.batch_size)
    epochs = config.epochs_of(task_index)
    tasks = [data.of_copy[k].tasks[task_index] for k in range(K)]
    strategies = [c.strategy for c in copies]
    views = model.views
    task_gradient = [s.needs_task_gradient for s in strategies]
    losses: list[list[float]] = [[] for _ in range(K)]
    penalties: list[list[float]] = [[] for _ in range(K)]
    model.train()
    for epoch in range(epochs):
        order = torch.stack([torch.randperm(n, generator=torch.Generator().manual_seed(
            _shuffle_seed(c.seed, task_index, epoch))) for c in copies]).to(device)
        loss_sum = torch.zeros(K, device=device)
        penalty_sum = torch.zeros(K, device=device)
        window = torch.zeros(K, device=device)
        penalty_seen = [0] * K
        for step, start in enumerate(range(0, n, config.batch_size), 1):
            index = order[:, start:start + config.batch_size]
            xb, yb = x[which, index], y[which, index]
            B = index.shape[1]
            logits = model(xb, arg)
            task_losses = F.cross_entropy(logits.flatten(0, 1), yb.flatten(), reduction="none").view(K, B).mean(1)
            optimizer.zero_grad(set_to_none=True)
            task_losses.sum().backward()
            model.bind_gradients()
            for k in range(K):
                if task_gradient[k]:
                    strategies[k].after_task_backward(views[k])
            measure = step % PENALTY_SAMPLE_EVERY == 0 or step == steps
            for k, strategy in enumerate(strategies):
                if measure:
                    with torch.no_grad():
                        value = strategy.penalty(views[k], Batch(xb[k], yb[k], arg, logits[k].detach()))
                    if value is not None:
                        penalty_sum[k] += value.detach() * B
                    penalty_seen[k] += B
                strategy.after_backward(views[k])
            optimizer.step()
            for k in range(K):
                strategies[k].after_step(views[k])
            detached = task_losses.detach()
            loss_sum += detached * B
            window += detached
            if step % DIVERGENCE_CHECK_EVERY == 0 or step == steps:
                window_sums, seen_sums, p_sums = torch.stack([window, loss_sum, penalty_sum]).tolist()
                window_steps = (step - 1) % DIVERGENCE_CHECK_EVERY + 1
                for k in range(K):
                    mean_penalty = p_sums[k] / penalty_seen[k] if penalty_seen[k] else 0.0
                    try:
                        _check_loss(window_sums[k] / window_steps, seen_sums[k] / min(n, start + B) + mean_penalty,
                                    strategies[k], config, tasks[k], epoch, step, steps)
                    except TrainingDivergedError as error:
                        raise TrainingDivergedError(f"copy {k} (seed {copies[k].seed}): {error}") from None
                window.zero_()
        for k in range(K):
            losses[k].append(seen_sums[k] / n)
            penalties[k].append(p_sums[k] / penalty_seen[k] if penalty_seen[k] else 0.0)
    return losses, penalties


def fit_stacked(copies: Sequence[Copy], config: TrainConfig | None = None, *,
                device: str | torch.device = "auto") -> list[Result]:
    """Train every copy on every task of its benchmark, all copies in one stacked pass.

    ``copies``: one :class:`Copy` per model (distinct strategy instances; the benchmarks
    may be shared or differ with equal sizes). ``config`` is shared; each copy's ``seed``
    replaces ``config.seed`` for its data order and in its result. Returns one
    :class:`Result` per copy, in order, as :func:`clutils.train.fit` would (up to the
    float tolerance the module docstring explains). Raises :class:`StackingError` when
    a model or strategy cannot stack (see :func:`stack_problem`).
    """
    config = config or TrainConfig()
    copies = list(copies)
    if not copies:
        raise StackingError("fit_stacked needs at least one copy")
    if len({id(c.strategy) for c in copies}) != len(copies):
        raise StackingError("each copy needs its own strategy instance (a strategy keeps per-run state)")
    if len({id(c.model) for c in copies}) != len(copies):
        raise StackingError("each copy needs its own model")
    for c in copies:
        problem = stack_problem(c.model, c.strategy)
        if problem:
            raise StackingError(f"cannot stack: {problem}. Run the seeds one at a time "
                                "(clutils.stacked.fit_copies does so), e.g. with clutils.train.fit")
    if config.shared_lr_scale != 1.0:
        raise StackingError("a stacked run does not support shared_lr_scale")
    device = resolve_device(device)
    data = _Data(copies, device)
    for c in copies:
        c.model.to(device)
    model = StackedModel([c.model for c in copies])
    expanding = any(isinstance(m, SingleHead) and m.expanding for m in model.network.modules())
    if expanding and any(b.tasks[t].classes != data.benchmarks[0].tasks[t].classes
                         for b in data.benchmarks for t in range(len(b))):
        raise StackingError("an expanding head opens each task's classes: the copies' tasks must have the same "
                            "classes (the same class order)")
    torch.manual_seed(copies[0].seed)  # dropout (one draw for all copies: see the module docstring)
    for k, c in enumerate(copies):
        c.strategy.setup(model.views[k], data.of_copy[k])
    results = [Result(
        config={**asdict(config), "seed": c.seed, "device": str(device), "stacked_copies": len(copies), **c.meta},
        benchmark=data.of_copy[k].describe(),
        strategy={"name": c.strategy.name, "hyperparameters": dict(c.strategy.hp)},
    ) for k, c in enumerate(copies)]
    optimizer = make_optimizer(model, config)
    initial, _ = evaluate_stacked(model, data, config.eval_batch_size)
    for result, row in zip(results, initial):
        result.initial_accuracy = row
    first = data.benchmarks[0]
    for task in first.tasks:
        started = time.perf_counter()
        model.prepare_task(task.classes, first.scenario)
        for k, c in enumerate(copies):
            c.strategy.before_task(model.views[k], data.of_copy[k].tasks[task.index])
        if config.reset_optimizer and task.index > 0:
            optimizer = make_optimizer(model, config, task.index)
        else:
            set_task_lr(optimizer, config, task.index)
        losses, penalties = _train_task(model, data, copies, task.index, optimizer, config)
        model.bind_gradients()
        for k, c in enumerate(copies):
            own = data.of_copy[k].tasks[task.index]
            c.strategy.after_task(model.views[k], own, c.strategy.training_data(own))
        trained = time.perf_counter()
        rows, matrices = evaluate_stacked(model, data, config.eval_batch_size, config.record_confusion)
        finished = time.perf_counter()
        for k, result in enumerate(results):
            result.accuracy_matrix.append(rows[k])
            result.epoch_losses.append(losses[k])
            result.epoch_penalties.append(penalties[k])
            if matrices is not None:
                result.confusion.append(matrices[k])
            result.timings["train_seconds"].append(trained - started)
            result.timings["eval_seconds"].append(finished - trained)
    return results


def can_stack(copies: Sequence[Copy]) -> str | None:
    """Why ``copies`` cannot be one stacked run, or None if they can."""
    for c in copies:
        problem = stack_problem(c.model, c.strategy)
        if problem:
            return problem
    shapes = {tuple((n, tuple(p.shape)) for n, p in c.model.named_parameters()) for c in copies}
    if len(shapes) > 1:
        return "the models differ in architecture"
    return None


def fit_copies(copies: Sequence[Copy], config: TrainConfig | None = None, *, device: str | torch.device = "auto",
               stack: bool | None = None) -> tuple[list[Result], str]:
    """Train the copies stacked when they can be (``stack=None``) or as asked; else one at a time.

    Returns the results and how they ran: ``"stacked"`` or ``"sequential (<why>)"``.
    """
    config = config or TrainConfig()
    problem = can_stack(copies)
    if stack is None:
        stack = problem is None
    if stack:
        return fit_stacked(copies, config, device=device), "stacked"
    results = []
    for c in copies:
        own = TrainConfig(**{**asdict(config), "seed": c.seed})
        results.append(fit(c.model, c.benchmark, c.strategy, own, device=device, meta=c.meta))
    return results, f"sequential ({problem or 'as asked'})"
