"""Soft Parameter Pruning (Peng, Jiang, Li, Hao, Jia and Wang: "Overcoming catastrophic forgetting
by soft parameter pruning", Eq. 1-5 and Table 1).

**Importance (Eq. 1-3).** After task ``t`` the importance of a parameter ``w`` is the change of
the output entropy when ``w`` is *pruned* (set to 0), from a second-order Taylor expansion whose
Hessian is approximated by the squared gradient (the "diagonal Fisher" of Section 3.2.1). With
``q = softmax(f(x))`` the output of the task's own head, in eval mode, on one batch ``B`` of the
task's training inputs (labels are not used),

    g_B = d [ sum_{x in B} H(q(x)) ] / dw,        H(q) = -sum_c q_c log q_c

    Omega_B = max(0, g_B * w + 1/2 * g_B^2 * w^2)                                  (Eq. 2-3)

and ``Omega^t`` is the mean of ``Omega_B`` over the batches of the task's training set. The
expansion is Eq. 2 with ``delta w = -w``: the paper writes ``H(q) = sum q log q`` (the negative
entropy), whose gradient is ``-g``, so its first-order term ``-g^T delta w`` is ``g * w``.
``Omega`` depends on the batch size (``g_B`` is the gradient of a *sum* over the batch, squared in
the second term): it is fixed by the hyperparameter ``batch_size`` (100, the authors' code).

**Accumulation (Eq. 4).** ``Omega^{1:t} = Omega^{1:t-1} + Omega^t`` (a sum over tasks, not a mean).

**Consolidation (Eq. 5).** Task ``t + 1`` minimises

    L = L_new + lam * sum_k Omega^{1:t}_k (w_k - w*_k)^2

(no factor 1/2), with ``w*`` the weights after task ``t``, over the *shared* layers only: the
output layers of a multi-head model are each task's own and stay free. "Soft pruning" is this
penalty: nothing is masked or set to zero; unimportant weights (``Omega`` near 0) are free to
move, important ones are held near their old values.

The authors' TensorFlow code (``lehaifeng/Learning_by_memory``) differs in places; the SPP
chapter (``book/spp.md``) lists every difference and the side this module follows.
"""
from __future__ import annotations

import torch
from torch import nn

from .base import Strategy, parameters_of
from .ewc import check_positive_int_or_none, sample_rows, task_seed
from .fisher import model_task
from .quadratic import QuadraticPenalty
from .registry import register


def shared_parameters(model: nn.Module) -> dict[str, torch.nn.Parameter]:
    """The trainable parameters outside the per-task output layers (all of them for a single head).

    A multi-head model's heads (``model.head.heads``) belong to one task each: SPP neither
    measures nor penalises them.
    """
    params = parameters_of(model)
    head = getattr(model, "head", None)
    if head is None or not hasattr(head, "heads"):
        return params
    own = {id(p) for p in head.heads.parameters()}
    return {n: p for n, p in params.items() if id(p) not in own}


def batch_entropy(logits: torch.Tensor) -> torch.Tensor:
    """``sum_{x in batch} H(q(x))``, ``H(q) = -sum_c q_c log q_c``, ``q = softmax(logits)``.

    Closed outputs of an expanding head (a logit of -1e9) have ``q_c = 0`` and add nothing.
    """
    log_q = torch.log_softmax(logits, dim=1)
    return -(log_q.exp() * log_q).sum()


def pruning_importance(gradient: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Eq. 2-3 for one batch: ``max(0, g * w + 1/2 * g^2 * w^2)`` elementwise."""
    first = gradient * weight
    return torch.clamp(first + 0.5 * first.square(), min=0.0)


def spp_importance(model: nn.Module, x: torch.Tensor, task: int | None = None,
                   batch_size: int = 100) -> dict[str, torch.Tensor]:
    """``Omega^t``: :func:`pruning_importance` averaged over the batches of ``x`` (Eq. 2-3).

    ``x`` is cut in consecutive batches of ``batch_size`` (the last one may be smaller);
    ``task`` is the head to read (the task's own head in a multi-head model). The model is
    in eval mode for the pass (no dropout) and restored afterwards; ``.grad`` is left alone.
    Only :func:`shared_parameters` are measured.
    """
    if len(x) == 0:
        raise ValueError("the SPP importance needs at least one sample")
    if batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size}")
    params = shared_parameters(model)
    names = list(params)
    total = {n: torch.zeros_like(p) for n, p in params.items()}
    was_training = model.training
    model.eval()
    batches = 0
    try:
        for start in range(0, len(x), batch_size):
            logits = model(x[start:start + batch_size], task)
            grads = torch.autograd.grad(batch_entropy(logits), [params[n] for n in names], allow_unused=True)
            for n, g in zip(names, grads):
                if g is not None:  # a parameter the entropy does not depend on has Omega 0
                    total[n] += pruning_importance(g, params[n].detach())
            batches += 1
    finally:
        model.train(was_training)
    return {n: t / batches for n, t in total.items()}


@register
class SPP(QuadraticPenalty):
    """SPP: penalty ``lam * sum_k Omega^{1:t}_k (w_k - w*_k)^2`` on the shared layers (Eq. 5).

    ``batch_size``: the batch over which the entropy is summed for one gradient (the
    authors' code: 100); ``samples``: how many training inputs of the task to measure on
    (None: all, as the authors' code).
    """

    name = "spp"
    strength_name = "lam"
    measures_after_task = True
    defaults = {"lam": 4.0, "batch_size": 100, "samples": None, "seed": 0}
    positive = frozenset({"batch_size"})

    def __init__(self, **hyperparameters):
        super().__init__(**hyperparameters)
        check_positive_int_or_none("samples", self.hp["samples"])

    def task_importance(self, model, task, data) -> dict[str, torch.Tensor]:
        """``Omega^t`` on the task's training inputs (a seeded subset of ``samples`` when set)."""
        generator = torch.Generator().manual_seed(task_seed(self.hp["seed"], task.index))
        x, _ = sample_rows(data.data.x, data.data.y, self.hp["samples"], generator)
        return spp_importance(model, x, model_task(self.benchmark, task), self.hp["batch_size"])

    def measure(self, model, task, data) -> dict[str, torch.Tensor]:
        """``Omega^{1:t} = Omega^{1:t-1} + Omega^t`` (Eq. 4)."""
        new = self.task_importance(model, task, data)
        return {n: self.importance[n] + v if n in self.importance else v for n, v in new.items()}


@register
class FrozenBody(Strategy):
    """SGD-F, a baseline of the SPP paper: plain SGD on task 1, then every layer below the output
    layer(s) frozen; later tasks train their output layer only (a fixed feature extractor)."""

    name = "sgd-f"
    # A frozen body with one output layer per task: a task-incremental baseline (with a shared
    # head, the head itself forgets).
    scenarios = ("task",)

    def before_task(self, model, task) -> None:
        if task.index == 0:
            return
        heads = {id(p) for layer in model.output_layers() for p in layer.parameters()}
        for p in model.parameters():
            if id(p) not in heads:
                p.requires_grad_(False)
