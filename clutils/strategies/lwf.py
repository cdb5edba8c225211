"""Learning without Forgetting (Li and Hoiem, ECCV 2016 / TPAMI 2017).

Before each new task the model is snapshotted (``old``); while the task is
trained, the outputs the old model gave for the *current* inputs are kept as
soft targets (knowledge distillation, Hinton et al. 2015):

    penalty = w(task) * sum_heads KL( softmax(old_logits / T) || softmax(new_logits / T) )

(KL averaged over the batch; ``w(task) = lam`` unless :meth:`LwF.distillation_weight`
is overridden, e.g. with the increasing lambda schedule of Maltoni and Lomonaco,
Eq. 5). What is distilled:

* multi-head (task-incremental): every earlier task's head, i.e. the old and the
  new model are both called with each earlier task id on the current inputs;
* single head (domain- and class-incremental): the outputs seen before the
  current task (the labels of the earlier tasks), the softmax taken over them.

Li and Hoiem use ``lambda_o = 1`` and ``T = 2`` (the defaults ``lam`` and
``temperature``). Their loss is the cross-entropy with the soft targets, which
differs from this KL by the targets' entropy, a constant: the gradients agree.
Their loss has no ``T^2`` factor, and by default neither has this one;
``t_squared=True`` multiplies the penalty by ``T^2`` (Hinton et al.'s scaling,
which keeps the gradient's scale independent of T: 4 times Li and Hoiem's
distillation at T = 2). Not reproduced: the paper's warm-up step that first
trains the new head alone.
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F

from ..models import ContinualModel
from .base import Strategy
from .registry import register


def distillation_kl(old_logits: torch.Tensor, new_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """``KL(softmax(old/T) || softmax(new/T))`` averaged over the batch."""
    old = F.log_softmax(old_logits / temperature, dim=-1)
    new = F.log_softmax(new_logits / temperature, dim=-1)
    return F.kl_div(new, old, reduction="batchmean", log_target=True)


def head_outputs(model: torch.nn.Module, x: torch.Tensor, tasks: list[int]) -> list[torch.Tensor]:
    """The logits of each task's head on ``x`` (the body is run once for a ContinualModel)."""
    if isinstance(model, ContinualModel):
        features = model.body(x)
        return [model.head(features, t) for t in tasks]
    return [model(x, t) for t in tasks]


@register
class LwF(Strategy):
    """LwF: distil the model snapshotted before the task on the current inputs (see module docstring)."""

    name = "lwf"
    defaults = {"lam": 1.0, "temperature": 2.0, "t_squared": False}
    positive = frozenset({"temperature"})  # divides the logits

    def __init__(self, **hyperparameters):
        super().__init__(**hyperparameters)
        self._reset()

    def _reset(self) -> None:
        self.old_model: torch.nn.Module | None = None
        self._pending_old: dict[str, torch.Tensor] | None = None  # loaded, rebuilt on first use
        self.trained: list[int] = []  # indices of the tasks trained so far
        self.seen: list[int] = []  # single head: outputs (labels) of the tasks trained so far
        self.current: int | None = None

    def setup(self, model, benchmark) -> None:
        super().setup(model, benchmark)
        self._reset()

    @property
    def multi_head(self) -> bool:
        return self.benchmark is not None and self.benchmark.scenario == "task"

    def distillation_weight(self, task: int) -> float:
        """The weight of the distillation term while training task ``task`` (override for a schedule)."""
        return float(self.hp["lam"])

    # -- hooks -------------------------------------------------------------------------------------
    def before_task(self, model, task) -> None:
        self.current = task.index
        self._pending_old = None
        self.old_model = self._snapshot(model) if self.trained else None

    def after_task(self, model, task, data) -> None:
        if task.index not in self.trained:
            self.trained.append(task.index)
        labels = torch.unique(task.train.y).tolist()
        self.seen = sorted(set(self.seen) | set(labels))

    def penalty(self, model, batch):
        old_model = self._old(model)
        if old_model is None:
            return None
        T = float(self.hp["temperature"])
        if self.multi_head:
            tasks = [t for t in self.trained if t != self.current]
            if not tasks:
                return None
            with torch.no_grad():
                targets = head_outputs(old_model, batch.x, tasks)
            outputs = head_outputs(model, batch.x, tasks)
        else:
            with torch.no_grad():
                old_logits = old_model(batch.x, None)
            seen = self._seen_index(batch.logits)
            targets = [old_logits if seen is None else old_logits[:, seen]]
            outputs = [batch.logits if seen is None else batch.logits[:, seen]]
        kl = sum(distillation_kl(o, n, T) for o, n in zip(targets, outputs))
        scale = T * T if self.hp["t_squared"] else 1.0
        return self.distillation_weight(self.current) * scale * kl

    # -- helpers -----------------------------------------------------------------------------------
    def _seen_index(self, logits: torch.Tensor) -> torch.Tensor | None:
        """The seen outputs as an index tensor (None: all outputs)."""
        if len(self.seen) == logits.shape[1]:
            return None
        return torch.tensor(self.seen, dtype=torch.int64, device=logits.device)

    @staticmethod
    def _snapshot(model: torch.nn.Module) -> torch.nn.Module:
        old = copy.deepcopy(model)
        old.eval()
        for p in old.parameters():
            p.requires_grad_(False)
            p.grad = None
        return old

    def _old(self, model: torch.nn.Module) -> torch.nn.Module | None:
        """The snapshot, rebuilt from a loaded state dict the first time it is needed."""
        if self.old_model is None and self._pending_old is not None:
            old = self._snapshot(model)
            old.load_state_dict(self._pending_old)
            self.old_model, self._pending_old = old, None
        return self.old_model

    # -- checkpointing -----------------------------------------------------------------------------
    def state_dict(self):
        state = {"trained": list(self.trained), "seen": list(self.seen)}
        if self.current is not None:
            state["current"] = int(self.current)
        old = self.old_model.state_dict() if self.old_model is not None else self._pending_old
        if old is not None:
            state.update({f"old.{k}": v.detach().clone() for k, v in old.items()})
        return state

    def load_state_dict(self, state) -> None:
        self._reset()
        self.trained = [int(t) for t in state.get("trained", [])]
        self.seen = [int(c) for c in state.get("seen", [])]
        self.current = int(state["current"]) if "current" in state else None
        old = {k[4:]: v for k, v in state.items() if k.startswith("old.")}
        self._pending_old = old or None
