"""The strategy interface: hooks that the one training loop calls.

A strategy changes what is trained on (``training_data``), follows where the
loop is within an epoch (``before_step``, for schedules such as HAT's annealed
s), adds samples to each batch (``extend_batch``, for replay), adds a penalty
to the task loss (``penalty``), watches gradients, optimiser steps and the
batches trained on (``after_task_backward``, ``after_step``, ``observe``),
consolidates after a task (``after_task``) and may swap weights for
evaluation (``before_eval`` ...).
Its state (``state_dict``) holds tensors and plain values only, so a run can
be checkpointed with ``torch.save`` and resumed with ``weights_only=True``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from ..data.benchmarks import Benchmark, Task
from ..data.tensors import TensorData
from .hyperparameters import check_hyperparameters


class UnknownHyperparameterError(TypeError):
    pass


@dataclass
class Batch:
    """One training batch: inputs, targets, the task id(s) and the model's logits."""

    x: torch.Tensor
    y: torch.Tensor
    task: int | torch.Tensor
    logits: torch.Tensor


@dataclass(frozen=True)
class Step:
    """Where the loop is: task index, epoch (from 0) of ``epochs``, step (from 1) of ``steps`` per epoch."""

    task: int
    epoch: int
    epochs: int
    step: int
    steps: int


@dataclass
class TrainingData:
    """What a task is trained on: samples and, if they mix tasks, one task id per sample."""

    data: TensorData
    task_ids: torch.Tensor | None = None


class Strategy:
    """Base class: naive fine-tuning does nothing beyond the task loss.

    Subclasses declare ``defaults`` (hyperparameter name -> default value from
    the paper); ``__init__`` accepts only those names, with values of the
    default's kind and range (:mod:`clutils.strategies.hyperparameters`);
    ``positive`` names the ones that must be strictly positive.
    """

    name: ClassVar[str] = "naive"
    defaults: ClassVar[dict[str, Any]] = {}
    positive: ClassVar[frozenset[str]] = frozenset()
    # The scenarios the strategy runs in (CWR, CWR+ and AR1: class-incremental only).
    scenarios: ClassVar[tuple[str, ...]] = ("task", "domain", "class")
    # True when ``before_task`` puts the model back to its initial weights (a new model per task):
    # the loop then gives it a fresh optimiser state too, whatever ``TrainConfig.reset_optimizer`` says.
    restarts_model: ClassVar[bool] = False
    # True when ``after_task_backward`` must see the gradient of the task loss alone
    # (the loop then back-propagates the penalty separately).
    needs_task_gradient: ClassVar[bool] = False
    # The architecture the strategy needs (a name of ``clutils.models.ARCHITECTURES``, e.g. HAT's gated
    # "hat-mlp"); None: any network. The command line builds it when no --arch is given.
    model_arch: ClassVar[str | None] = None
    # True when the strategy adds its penalty's gradient to ``.grad`` itself (in
    # ``after_backward``): the loop then does not back-propagate ``penalty()``.
    applies_penalty_gradient: ClassVar[bool] = False

    def __init__(self, **hyperparameters: Any):
        unknown = sorted(set(hyperparameters) - set(self.defaults))
        if unknown:
            valid = ", ".join(sorted(self.defaults)) or "none"
            raise UnknownHyperparameterError(
                f"{self.name} has no hyperparameter {', '.join(map(repr, unknown))}; valid: {valid}"
            )
        check_hyperparameters(self.name, self.defaults, hyperparameters, self.positive)
        self.hp: dict[str, Any] = {**self.defaults, **hyperparameters}
        self.benchmark: Benchmark | None = None

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.hp.items())
        return f"{type(self).__name__}({args})"

    # -- hooks, in the order the loop calls them -------------------------------------------
    def setup(self, model: torch.nn.Module, benchmark: Benchmark) -> None:
        """Once, before the first task."""
        self.benchmark = benchmark

    def training_data(self, task: Task) -> TrainingData:
        """The samples to train ``task`` on (replay and joint training add others)."""
        return TrainingData(task.train)

    def before_task(self, model: torch.nn.Module, task: Task) -> None:
        """Before the first step of ``task``."""

    def before_step(self, model: torch.nn.Module, step: Step) -> None:
        """Before each step's forward pass (schedules within an epoch)."""

    def extend_batch(self, x: torch.Tensor, y: torch.Tensor,
                     task: int | torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor, int | torch.Tensor | None]:
        """The inputs, targets and task id(s) the step trains on, in one loss.

        Replay returns the current batch followed by its replayed samples (the
        current samples must come first: the loop reads their logits as
        ``logits[:len(y)]``). The default trains on the current batch alone.
        """
        return x, y, task

    def loss(self, model: torch.nn.Module, batch: Batch) -> torch.Tensor:
        """The step's task loss on the extended ``batch`` (its logits hold the graph).

        The default is the mean cross-entropy, ``F.cross_entropy(batch.logits, batch.y)``;
        iCaRL replaces it with a sigmoid binary cross-entropy with distillation targets.
        """
        return F.cross_entropy(batch.logits, batch.y)

    def penalty(self, model: torch.nn.Module, batch: Batch) -> torch.Tensor | None:
        """Added to the task loss of every step (None: no penalty); ``batch`` is the extended batch."""
        return None

    def after_task_backward(self, model: torch.nn.Module) -> None:
        """Gradients now hold d(task loss)/d(theta) only (if ``needs_task_gradient``)."""

    def after_backward(self, model: torch.nn.Module) -> None:
        """Gradients now hold the gradient of the whole loss."""

    def after_step(self, model: torch.nn.Module) -> None:
        """Right after the optimiser step."""

    def observe(self, model: torch.nn.Module, batch: Batch) -> None:
        """After ``after_step``: the current batch alone, with its logits from this step's forward pass
        (detached; a replay buffer stores them at insertion time)."""

    def after_task(self, model: torch.nn.Module, task: Task, data: TrainingData) -> None:
        """After the last step of ``task`` (consolidation, importance, snapshots)."""

    def before_eval(self, model: torch.nn.Module) -> None:
        """Before all tasks are evaluated."""

    def predict(self, model: torch.nn.Module, x: torch.Tensor, task: int | None) -> torch.Tensor:
        """Predicted labels of a batch at evaluation: the default is the largest logit; iCaRL
        classifies by the nearest mean of exemplars."""
        return model(x, task).argmax(1)

    def before_eval_task(self, model: torch.nn.Module, task: Task) -> None:
        """Before one task is evaluated."""

    def after_eval(self, model: torch.nn.Module) -> None:
        """After evaluation; training continues from here."""

    # -- checkpointing -------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Tensors and plain values needed to resume (override with the strategy's state)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state:
            raise ValueError(f"{self.name} keeps no state but got {sorted(state)}")


def parameters_of(model: torch.nn.Module) -> dict[str, torch.nn.Parameter]:
    """The trainable parameters by name (the ones a regulariser protects)."""
    return {n: p for n, p in model.named_parameters() if p.requires_grad}


def restore_initial_state(model: torch.nn.Module, initial: dict[str, torch.Tensor]) -> None:
    """Load ``initial`` (the state at ``setup``) into ``model`` but keep the outputs its head has opened.

    The loop opens the task's classes (``model.prepare_task``) before ``before_task``; the
    initial state of an expanding head has every output closed, and reloading it as it is
    would mask every logit to the same constant (the model then learns nothing).
    """
    opened = model.opened_outputs() if hasattr(model, "opened_outputs") else {}
    model.load_state_dict({**initial, **opened})


def clone_parameters(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in parameters_of(model).items()}
