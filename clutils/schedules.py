"""The validation-based learning-rate schedule of the HAT authors' code (an option of the loop).

Serra et al.'s code (and most continual-learning code derived from it) trains every task
for up to ``nepochs`` epochs and, after each epoch, measures the loss on a validation set
held out of the task's training data (10%):

* a validation loss below the best so far keeps a copy of the weights and resets the patience;
* ``patience`` epochs in a row without improvement divide the learning rate by ``factor``
  (and reset the patience); a learning rate that falls below ``min_lr`` stops the task;
* at the end of the task (stopped or out of epochs) the best weights are put back.

:func:`split_validation` holds the validation samples out (they are never trained on);
:class:`PlateauSchedule` is the per-epoch bookkeeping, which the loop
(:func:`clutils.train.train_task`) calls once per epoch when ``TrainConfig.lr_patience`` is set;
:func:`validation_loss` is the loss it reads.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from .data.tensors import TensorData


def split_validation(data: TensorData, fraction: float, seed: int,
                     task_ids: torch.Tensor | None = None
                     ) -> tuple[TensorData, TensorData, torch.Tensor | None, torch.Tensor | None]:
    """Hold ``fraction`` of every class of ``data`` out (seeded; at least one sample per class kept on
    each side when the class has two or more).

    Returns ``(train, validation, train_task_ids, validation_task_ids)``; the two index sets are
    disjoint and together cover ``data``.
    """
    if not 0 < fraction < 1:
        raise ValueError(f"validation_fraction must be in (0, 1), got {fraction}")
    if len(data) < 2:
        raise ValueError(f"a validation split needs at least 2 training samples, got {len(data)}")
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(data), generator=generator)
    labels = data.y.cpu()[order]
    held = []
    for c in torch.unique(labels).tolist():
        members = order[labels == c]
        k = min(max(1, round(fraction * len(members))), len(members) - 1)
        held.append(members[:k])
    mask = torch.zeros(len(data), dtype=torch.bool)
    mask[torch.cat(held)] = True
    if mask.all():  # one sample per class everywhere: keep the first for training
        mask[order[0]] = False
    val_index, train_index = mask.nonzero().flatten(), (~mask).nonzero().flatten()
    ids = (None, None) if task_ids is None else (task_ids[train_index.to(task_ids.device)],
                                                 task_ids[val_index.to(task_ids.device)])
    return data.take(train_index), data.take(val_index), ids[0], ids[1]


@torch.no_grad()
def validation_loss(model: torch.nn.Module, strategy, data: TensorData, task, batch_size: int) -> float:
    """Mean cross-entropy on ``data`` with the model as it is evaluated (``eval()`` and the
    strategy's ``before_eval``, e.g. HAT's gates at ``s_max``). ``task``: an int, None or one id per sample."""
    was_training = model.training
    model.eval()
    strategy.before_eval(model)
    total = torch.zeros((), device=data.y.device)
    for i in range(0, len(data), batch_size):
        t = task[i:i + batch_size] if isinstance(task, torch.Tensor) else task
        logits = model(data.x[i:i + batch_size], t)
        total += F.cross_entropy(logits, data.y[i:i + batch_size], reduction="sum")
    strategy.after_eval(model)
    model.train(was_training)
    return total.item() / len(data)


@dataclass
class PlateauSchedule:
    """lr / ``factor`` after ``patience`` epochs without a lower validation loss; stop below ``min_lr``.

    Call :meth:`after_epoch` once per epoch with the validation loss; it returns False when the
    task must stop. :meth:`restore` puts the best weights (a copy of the whole ``state_dict``,
    buffers included) back. ``history`` keeps ``(epoch, validation loss, lr)`` per epoch.
    """

    lr: float
    patience: int = 5
    factor: float = 3.0
    min_lr: float = 1e-4
    best: float = math.inf
    wait: int = field(init=False)
    best_state: dict | None = field(default=None, init=False, repr=False)
    best_epoch: int = field(default=-1, init=False)
    stopped: bool = field(default=False, init=False)
    history: list = field(default_factory=list, init=False, repr=False)

    def __post_init__(self) -> None:
        if int(self.patience) < 1:
            raise ValueError(f"lr_patience must be a positive integer, got {self.patience}")
        if not self.factor > 1:
            raise ValueError(f"lr_factor must be above 1, got {self.factor}")
        if not self.min_lr > 0:
            raise ValueError(f"lr_min must be positive, got {self.min_lr}")
        self.wait = self.patience

    def after_epoch(self, model: torch.nn.Module, loss: float, optimizer: torch.optim.Optimizer | None = None) -> bool:
        """Book the epoch's validation ``loss``; set the optimiser's new lr; False: stop the task."""
        self.history.append((len(self.history), loss, self.lr))
        if loss < self.best:
            self.best, self.best_epoch, self.wait = loss, len(self.history) - 1, self.patience
            self.best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            return True
        self.wait -= 1
        if self.wait > 0:
            return True
        new_lr = self.lr / self.factor
        if new_lr < self.min_lr:
            self.stopped = True
            return False
        if optimizer is not None:  # the groups keep their ratios (shared_lr_scale)
            for group in optimizer.param_groups:
                group["lr"] = group["lr"] * new_lr / self.lr
        self.lr, self.wait = new_lr, self.patience
        return True

    def restore(self, model: torch.nn.Module) -> None:
        """Load the best epoch's weights (nothing to do before the first epoch)."""
        if self.best_state is not None:
            model.load_state_dict(self.best_state)
