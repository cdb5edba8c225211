"""Reference strategies: naive fine-tuning and the two upper bounds.

* ``naive``: train on each task in turn with the task loss alone.
* ``joint``: train task ``t`` on the union of tasks ``1..t`` (the multi-task
  upper bound; "cumulative" in Maltoni and Lomonaco).
* ``separate``: a fresh model per task, each evaluated on its own task (the
  single-task upper bound of ALASSO and SPP).
"""
from __future__ import annotations

import torch

from ..data.benchmarks import Task
from ..data.tensors import TensorData
from .base import Strategy, TrainingData, restore_initial_state
from .registry import register


@register
class Naive(Strategy):
    """Naive fine-tuning: minimise the current task's loss, nothing else."""

    name = "naive"


@register
class Joint(Strategy):
    """Joint training on all data seen so far: ``D_1 u ... u D_t`` when task ``t`` arrives.

    ``from_scratch=True`` re-initialises the model before each task (a true
    multi-task model per step); the default continues from the previous one.
    """

    name = "joint"
    defaults = {"from_scratch": False}

    def setup(self, model, benchmark) -> None:
        super().setup(model, benchmark)
        self.initial = {k: v.detach().clone() for k, v in model.state_dict().items()}

    def training_data(self, task: Task) -> TrainingData:
        seen = self.benchmark.tasks[: task.index + 1]
        x = torch.cat([t.train.x for t in seen])
        y = torch.cat([t.train.y for t in seen])
        ids = torch.cat([torch.full((len(t.train),), t.index, dtype=torch.int64, device=y.device) for t in seen])
        return TrainingData(TensorData(x, y), ids)

    @property
    def restarts_model(self) -> bool:
        return bool(self.hp["from_scratch"])

    def before_task(self, model, task) -> None:
        if self.hp["from_scratch"] and task.index > 0:
            restore_initial_state(model, self.initial)

    def state_dict(self):
        return {"initial": self.initial}

    def load_state_dict(self, state) -> None:
        self.initial = state["initial"]


@register
class Separate(Strategy):
    """One model per task (the single-task upper bound).

    Before each task the weights go back to the same initialisation; after it
    they are stored; task ``j`` is evaluated with its own weights (a task not
    trained yet with the untrained initial weights).
    """

    name = "separate"
    restarts_model = True

    def setup(self, model, benchmark) -> None:
        super().setup(model, benchmark)
        self.initial = {k: v.detach().clone() for k, v in model.state_dict().items()}
        self.per_task: dict[int, dict[str, torch.Tensor]] = {}

    def before_task(self, model, task) -> None:
        restore_initial_state(model, self.initial)

    def after_task(self, model, task, data) -> None:
        self.per_task[task.index] = {k: v.detach().clone() for k, v in model.state_dict().items()}

    def before_eval(self, model) -> None:
        self._current = {k: v.detach().clone() for k, v in model.state_dict().items()}

    def before_eval_task(self, model, task) -> None:
        model.load_state_dict(self.per_task.get(task.index, self.initial))

    def after_eval(self, model) -> None:
        model.load_state_dict(self._current)

    def state_dict(self):
        state = {f"initial.{k}": v for k, v in self.initial.items()}
        for t, weights in self.per_task.items():
            state.update({f"task{t}.{k}": v for k, v in weights.items()})
        return state

    def load_state_dict(self, state) -> None:
        self.initial, self.per_task = {}, {}
        for key, value in state.items():
            prefix, name = key.split(".", 1)
            if prefix == "initial":
                self.initial[name] = value
            else:
                self.per_task.setdefault(int(prefix[4:]), {})[name] = value
