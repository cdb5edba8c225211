"""LwF, EWC and SI as Maltoni and Lomonaco (2019, section 2) adapt them to class-incremental learning.

The paper calls class-incremental learning *single-incremental-task* (SIT): one
head over every class met so far, and no task id at test time. Run in their
native (multi-task) form, LwF, EWC and SI either stop learning or keep
forgetting across many batches; the paper adds a normalisation to each. They
are registered under their own names (``lwf-sit``, ``ewc-sit``, ``si-sit``)
because they change what the methods compute, not just a default:

* **LwF** (Eq. 2-5): the distillation term is a cross-entropy on the old
  model's soft targets, fused with the one-hot target into one soft target
  ``t = (1 - lambda_i) * onehot + lambda_i * y_lwf`` (Eq. 3; its gradient equals
  the two-term loss of Eq. 2, Eq. 4), and ``lambda_i`` grows with the share of
  patterns already seen: ``lambda_1 = 0``,
  ``lambda_i = map(1 - n_i / sum_{j<=i} n_j)`` (Eq. 5), ``map`` a linear map.
* **EWC** (Eq. 6-8): one Fisher accumulated over the batches, then *averaged*
  and *clipped*: ``F = F + F^i``, ``F_hat = clip(F / i, max_F)``.
* **SI** (Eq. 9-11): the path-integral importance of the batch
  ``F^i_k = sum dL_k / (T_k^2 + xi)`` is added with a batch weight,
  ``F = F + w_i * F^i`` (``w_1`` for the first batch, ``w_rest`` after), and
  clipped: ``F_hat = clip(F, max_F)``.

EWC and SI then regularise *as a weight decay toward the previous weights*
(Eq. 7): after back-propagation each gradient gets ``lambda * F_hat * (theta -
theta*)``, so one SGD step with learning rate ``eta`` moves a weight
``eta * lambda * F_hat`` of the way back to its anchor. With ``F_hat <= max_F``
that fraction stays at most one, i.e. no weight overshoots its anchor, as long as

    lambda <= 1 / (eta * max_F)                    (:func:`lambda_bound`)

(Section 2.2). Beyond ``2 / (eta * max_F)`` the decay of a saturated weight
diverges. The bound is for plain SGD, the paper's optimiser.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn.functional as F

from ..data.benchmarks import Task
from .base import Strategy, TrainingData, parameters_of
from .fisher import diagonal_fisher, model_task
from .lwf import LwF
from .quadratic import QuadraticPenalty
from .registry import register
from .si import PathIntegral


def lambda_bound(lr: float, max_f: float) -> float:
    """The largest ``lambda`` with no overshoot for a weight whose importance is ``max_F`` (Section 2.2).

    One SGD step moves a weight ``lr * lambda * F_hat`` of the way to its anchor; ``F_hat <= max_F``.
    """
    if not (lr > 0 and max_f > 0):
        raise ValueError(f"lr and max_f must be positive, got {lr} and {max_f}")
    return 1.0 / (lr * max_f)


def decay_lr(strategy: Strategy, lr: float, shared_lr_scale: float = 1.0) -> float:
    """The learning rate the decay of Eq. 7 acts with: the shared layers' where only they are protected (AR1)."""
    return lr if getattr(strategy, "protects_head", True) else lr * min(1.0, shared_lr_scale)


class LambdaOvershootWarning(UserWarning):
    """``eta * lambda * max_F`` is above 1: a saturated weight overshoots its anchor at each step."""


def check_lambda(strategy: Strategy, lr: float, optimizer: str = "sgd") -> float | None:
    """``eta * lambda * max_F`` of a clipped-importance strategy (None for others and for non-SGD optimisers).

    Above 1 (``lambda > 1 / (eta * max_F)``, Section 2.2) a saturated weight overshoots its
    anchor at every step: a :class:`LambdaOvershootWarning` (the paper's own EWC settings of
    Tables 4-5 sit at 1.2-1.6). Above 2 the decay of a saturated weight diverges: ValueError.
    """
    if "lam" not in strategy.hp or "max_f" not in strategy.hp or optimizer != "sgd":
        return None
    ratio = lr * float(strategy.hp["lam"]) * float(strategy.hp["max_f"])
    bound = lambda_bound(lr, float(strategy.hp["max_f"]))
    where = (f"{strategy.name}: lambda={float(strategy.hp['lam']):g} with eta={lr:g}, "
             f"max_F={float(strategy.hp['max_f']):g} (bound 1 / (eta * max_F) = {bound:g})")
    if ratio > 2 + 1e-9:
        raise ValueError(f"{where}: eta * lambda * max_F = {ratio:.3g} > 2, the decay toward the anchor "
                         "diverges for saturated weights (Maltoni & Lomonaco, section 2.2)")
    if ratio > 1 + 1e-9:
        import warnings

        warnings.warn(f"{where}: eta * lambda * max_F = {ratio:.3g} > 1, a saturated weight overshoots "
                      "its anchor at every step", LambdaOvershootWarning, stacklevel=2)
    return ratio


class ClippedImportance(QuadraticPenalty):
    """Base of EWC-SIT, SI-SIT and AR1: clipped importance applied as a decay toward the anchor.

    ``raw`` is the importance ``F`` as accumulated (before averaging and
    clipping), ``importance`` the ``F_hat`` the decay uses, ``anchor`` the
    weights after the previous batch. With ``keep_snapshots = k`` (set on the
    instance) the first ``k`` batches' ``F`` and ``F_hat`` are kept in
    ``snapshots`` (flattened, on the CPU) for the importance histograms.
    """

    strength_name = "lam"
    keep_snapshots: int = 0
    protects_head = True  # AR1: False (F and Theta cover the shared weights only)

    @property
    def strength(self) -> float:
        return float(self.hp["lam"])

    @property
    def gradient_scale(self) -> float:
        """``lambda``: the decay adds ``lambda * F_hat * (theta - theta*)`` to the gradient (Eq. 7)."""
        return self.strength

    def setup(self, model, benchmark) -> None:
        super().setup(model, benchmark)
        self.raw: dict[str, torch.Tensor] = {}
        self.batches = 0
        self.snapshots: list[dict[str, Any]] = []

    def protected(self, model: torch.nn.Module) -> dict[str, torch.nn.Parameter]:
        """The parameters this strategy measures and protects (all trainable ones)."""
        return parameters_of(model)

    def penalty(self, model, batch):
        """``lambda / 2 * sum F_hat (theta - theta*)^2``, differentiable (for reports and tests).

        The loop does not back-propagate it (``applies_penalty_gradient``): ``after_backward``
        adds its gradient ``lambda * F_hat * (theta - theta*)``, Eq. 7's decay, directly.
        """
        if not self.importance:
            return None
        params = dict(model.named_parameters())
        total = sum((self.importance[n] * (params[n] - self.anchor[n]).pow(2)).sum() for n in self.importance)
        return 0.5 * self.strength * total

    def normalise(self) -> dict[str, torch.Tensor]:
        """``F_hat`` from ``raw`` and ``batches`` (subclasses: Eq. 8 or Eq. 11)."""
        raise NotImplementedError

    def consolidate_importance(self, model, new: dict[str, torch.Tensor], weight: float = 1.0) -> None:
        """``F = F + weight * F^i``; ``F_hat`` = :meth:`normalise`; re-anchor at the current weights."""
        self.batches += 1
        for n, v in new.items():
            self.raw[n] = self.raw[n] + weight * v if n in self.raw else weight * v
        self.importance = self.normalise()
        self.invalidate_gradient_cache()
        protected = self.protected(model)
        self.anchor = {n: p.detach().clone() for n, p in protected.items()}
        if len(self.snapshots) < self.keep_snapshots:
            self.snapshots.append({
                "batch": self.batches,
                "raw": torch.cat([v.flatten() for v in self.raw.values()]).float().cpu(),
                "normalised": torch.cat([v.flatten() for v in self.importance.values()]).float().cpu(),
            })

    def saturated_fraction(self) -> float:
        """Share of protected weights whose ``F_hat`` sits at ``max_F``."""
        if not self.importance:
            return 0.0
        max_f = float(self.hp["max_f"])
        hit = sum(int((v >= max_f * (1 - 1e-6)).sum()) for v in self.importance.values())
        return hit / sum(v.numel() for v in self.importance.values())

    def state_dict(self):
        """``F`` and ``Theta`` (the paper's ``2 m`` values); ``F_hat`` is recomputed from ``F`` on loading."""
        state = {f"raw.{n}": v for n, v in self.raw.items()}
        state.update({f"anchor.{n}": v for n, v in self.anchor.items()})
        state["batches"] = torch.tensor(self.batches)
        return state

    def load_state_dict(self, state) -> None:
        state = dict(state)
        self.batches = int(state.pop("batches", 0))
        self.raw = {k.split(".", 1)[1]: v for k, v in state.items() if k.startswith("raw.")}
        self.anchor = {k.split(".", 1)[1]: v for k, v in state.items() if k.startswith("anchor.")}
        self.importance = self.normalise() if self.raw else {}
        self.invalidate_gradient_cache()


PATH_GRADIENTS = ("total", "task")


@register
class SISIT(ClippedImportance):
    """SI for class-incremental learning (Maltoni & Lomonaco, Eq. 9-11).

    Algorithm, for each batch ``B_i``:

    1. train with the task loss; every SGD step adds ``lambda * F_hat * (theta - theta*)``
       to the gradient (Eq. 7) and accumulates ``-g_k * delta_theta_k`` (Eq. 9, ``delta_theta``
       the step taken);
    2. ``F^i_k = sum(-g_k * delta_theta_k) / (T_k^2 + xi)``, ``T_k`` the weight's total
       movement over the batch (Eq. 10);
    3. ``F = F + w_i * F^i`` with ``w_1 = w_first``, ``w_i = w_rest`` for ``i > 1``;
       ``F_hat = clip(F, 0, max_F)`` (Eq. 11); ``theta* = theta``.

    ``g`` in step 1 (``path_gradient``): ``"total"`` (the default) is the gradient the
    optimiser steps with, the decay of Eq. 7 included, as the authors' ar1-pytorch code
    reads it after back-propagating the regularised loss; ``"task"`` is the gradient of
    the task loss alone, SI's own definition (Zenke et al.) and what Eq. 9 writes.

    The lower clip at 0 is ours: the paper (and its code) clip from above only,
    but a negative importance would make the decay push a weight *away* from
    its anchor. Defaults: Table 4 (CaffeNet on CORe50).
    """

    name = "si-sit"
    defaults = {"lam": 5e7, "max_f": 1e-3, "xi": 1e-7, "w_first": 1e-5, "w_rest": 5e-3, "path_gradient": "total"}
    positive = frozenset({"xi"})  # divides: Eq. 10

    def __init__(self, **hyperparameters):
        super().__init__(**hyperparameters)
        if self.hp["path_gradient"] not in PATH_GRADIENTS:
            raise ValueError(f"path_gradient must be one of {PATH_GRADIENTS}, got {self.hp['path_gradient']!r}")

    @property
    def needs_task_gradient(self) -> bool:
        """The loop separates the task loss's gradient only when the path integral reads it alone."""
        return self.hp["path_gradient"] == "task"

    def before_task(self, model, task) -> None:
        super().before_task(model, task)
        self.path = PathIntegral(self.protected(model))

    def after_task_backward(self, model) -> None:
        self.path.record_gradient()  # path_gradient="task": the task loss's gradient alone

    def after_backward(self, model) -> None:
        super().after_backward(model)  # the decay of Eq. 7
        if self.hp["path_gradient"] == "total" and hasattr(self, "path"):  # no path outside a task
            self.path.record_gradient()

    def after_step(self, model) -> None:
        self.path.record_step()

    def batch_importance(self) -> dict[str, torch.Tensor]:
        """``F^i`` of the batch just trained (Eq. 10), before weighting."""
        w = self.path.contribution()
        delta = self.path.displacement()
        return {n: w[n] / (delta[n].pow(2) + self.hp["xi"]) for n in w}

    def normalise(self):
        return {n: v.clamp(0.0, self.hp["max_f"]) for n, v in self.raw.items()}

    def after_task(self, model, task, data) -> None:
        weight = self.hp["w_first"] if self.batches == 0 else self.hp["w_rest"]
        self.consolidate_importance(model, self.batch_importance(), weight)
        del self.path


def minibatch_fisher(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, task: int | None,
                     batch_size: int = 256) -> dict[str, torch.Tensor]:
    """The Fisher as the paper computed it (Appendix A): squares of *mini-batch* mean gradients, averaged.

    ``F_k = 1/M sum_m (d L_cross(batch m) / d theta_k)^2`` over the ``M`` mini-batches of
    ``batch_size`` patterns; in eval mode (no dropout), weights unchanged.
    """
    params = parameters_of(model)
    total = {n: torch.zeros_like(p) for n, p in params.items()}
    was_training = model.training
    model.eval()
    batches = 0
    try:
        for start in range(0, len(x), batch_size):
            model.zero_grad(set_to_none=True)
            F.cross_entropy(model(x[start:start + batch_size], task), y[start:start + batch_size]).backward()
            for n, p in params.items():
                if p.grad is not None:
                    total[n] += p.grad.detach().square()
            batches += 1
    finally:
        model.zero_grad(set_to_none=True)
        model.train(was_training)
    return {n: v / max(batches, 1) for n, v in total.items()}


FISHER_ESTIMATES = ("minibatch", "sample")


@register
class EWCSIT(ClippedImportance):
    """EWC for class-incremental learning (Maltoni & Lomonaco, Eq. 6-8).

    Algorithm, for each batch ``B_i``:

    1. train with the task loss; every SGD step adds ``lambda * F_hat * (theta - theta*)``
       to the gradient (Eq. 7, the penalty ``lambda/2 sum F_hat (theta - theta*)^2``);
    2. compute the Fisher ``F^i`` on the batch's patterns: ``fisher="minibatch"`` squares
       mini-batch mean gradients as the paper did (Appendix A), ``"sample"`` uses
       per-sample gradients (:func:`clutils.strategies.fisher.diagonal_fisher`);
    3. ``F = F + F^i``; ``F_hat = clip(F / i, max_F)`` (Eq. 8, an *average*, so that a
       sum growing with every batch cannot blow the decay up); ``theta* = theta``.

    Defaults: Table 4 (CaffeNet on CORe50).
    """

    name = "ewc-sit"
    defaults = {"lam": 5e7, "max_f": 1e-3, "fisher": "minibatch", "fisher_batch": 256}
    positive = frozenset({"fisher_batch"})

    def __init__(self, **hyperparameters):
        super().__init__(**hyperparameters)
        if self.hp["fisher"] not in FISHER_ESTIMATES:
            raise ValueError(f"fisher must be one of {FISHER_ESTIMATES}, got {self.hp['fisher']!r}")

    def batch_importance(self, model, task: Task, data: TrainingData) -> dict[str, torch.Tensor]:
        x, y = data.data.x, data.data.y
        t = model_task(self.benchmark, task)
        if self.hp["fisher"] == "sample":
            fisher = diagonal_fisher(model, x, y, t)
        else:
            fisher = minibatch_fisher(model, x, y, t, int(self.hp["fisher_batch"]))
        keep = self.protected(model)
        return {n: v for n, v in fisher.items() if n in keep}

    def normalise(self):
        return {n: (v / self.batches).clamp(max=self.hp["max_f"]) for n, v in self.raw.items()}

    def after_task(self, model, task, data) -> None:
        self.consolidate_importance(model, self.batch_importance(model, task, data))


def linear_map(x: float, source: Sequence[float], target: Sequence[float]) -> float:
    """The linear map sending ``source[0]..source[1]`` to ``target[0]..target[1]`` (the paper's ``map``)."""
    (a, b), (c, d) = source, target
    if a == b:
        raise ValueError(f"the source interval of map is empty: {source}")
    return c + (x - a) * (d - c) / (b - a)


LWF_SCHEDULES = ("eq5", "fixed")


def lwf_lambdas(sizes: Sequence[int], schedule: str = "eq5", lam: float = 0.5,
                map_from: Sequence[float] = (0.0, 1.0), map_to: Sequence[float] = (0.0, 1.0)) -> list[float]:
    """``lambda_i`` of every batch from the batch sizes ``n_i`` (Eq. 5), clamped to [0, 1].

    ``schedule="eq5"``: ``lambda_1 = 0``, ``lambda_i = map(1 - n_i / sum_{j<=i} n_j)``;
    ``"fixed"``: ``lambda_1 = 0``, ``lambda_i = lam`` (the rows 2 and 3 of Figure 11).
    """
    if schedule not in LWF_SCHEDULES:
        raise ValueError(f"unknown schedule {schedule!r}; choose one of: {', '.join(LWF_SCHEDULES)}")
    out, seen = [], 0
    for i, n in enumerate(sizes):
        seen += n
        if i == 0:
            out.append(0.0)
        elif schedule == "fixed":
            out.append(float(lam))
        else:
            out.append(min(1.0, max(0.0, linear_map(1 - n / seen, map_from, map_to))))
    return out


@register
class LwFSIT(LwF):
    """LwF with weighted soft targets and a growing lambda (Maltoni & Lomonaco, Eq. 2-5).

    Algorithm, for each batch ``B_i``:

    1. before training, keep the model as it is (the teacher, :class:`~clutils.strategies.lwf.LwF`'s
       snapshot) and set ``lambda_i``: Eq. 5 with ``schedule="eq5"``, or ``lam`` for every
       batch after the first with ``schedule="fixed"``; ``n_i`` counts the batch's patterns
       (``count="examples"``, the paper's choice) or classes (``count="classes"``);
    2. train on ``L = L_cross(y_hat, t)`` with the soft target
       ``t = (1 - lambda_i) * onehot(y) + lambda_i * y_lwf`` (Eq. 3), ``y_lwf`` the
       teacher's softmax over *every* output of the head (old and new classes alike:
       in a single incremental task there is no old/new split of the outputs).

    It is the base LwF with two methods replaced: ``distillation_weight`` (the schedule)
    and ``penalty`` (the fused soft target instead of a temperature-scaled KL on the old
    outputs). The paper stores ``y_lwf`` once per pattern before training; the loop here
    hands the strategy mini-batches without their indices, so the teacher (in eval mode)
    predicts each mini-batch instead: the same targets, one extra forward per step.
    Cross-entropy is linear in its target, so ``L = L_cross(onehot) + lambda_i *
    (L_cross(y_lwf) - L_cross(onehot))``: the loop's task loss plus this penalty, with
    exactly the gradient of Eq. 4. Defaults: Table 4 (``map`` [0.66, 0.9] -> [0.45, 0.85],
    CORe50's 10 + 5 + ... classes); the paper runs LwF with an expanding head.
    """

    name = "lwf-sit"
    defaults = {"schedule": "eq5", "lam": 0.5, "map_from": [0.66, 0.9], "map_to": [0.45, 0.85],
                "count": "examples", "temperature": 1.0}

    def __init__(self, **hyperparameters):
        super().__init__(**hyperparameters)
        if self.hp["schedule"] not in LWF_SCHEDULES:
            raise ValueError(f"unknown schedule {self.hp['schedule']!r}; choose one of: {', '.join(LWF_SCHEDULES)}")
        if self.hp["count"] not in ("examples", "classes"):
            raise ValueError(f"count must be 'examples' or 'classes', got {self.hp['count']!r}")
        self.lambdas: list[float] = []

    def setup(self, model, benchmark) -> None:
        super().setup(model, benchmark)
        sizes = [len(t.train) if self.hp["count"] == "examples" else len(t.classes) for t in benchmark.tasks]
        self.lambdas = lwf_lambdas(sizes, self.hp["schedule"], self.hp["lam"], self.hp["map_from"],
                                   self.hp["map_to"])

    def distillation_weight(self, task: int) -> float:
        return self.lambdas[task]

    def penalty(self, model, batch):
        teacher = self._old(model)
        lam = self.distillation_weight(self.current) if self.current is not None else 0.0
        if teacher is None or lam == 0:
            return None
        T = float(self.hp["temperature"])
        with torch.no_grad():
            soft = torch.softmax(teacher(batch.x, batch.task) / T, dim=1)
        log_p = torch.log_softmax(batch.logits, dim=1)
        soft_ce = -(soft * log_p).sum(1).mean()
        hard_ce = -log_p.gather(1, batch.y.unsqueeze(1)).mean()
        return lam * (soft_ce - hard_ce)


def soft_target_loss(logits: torch.Tensor, y: torch.Tensor, y_lwf: torch.Tensor, lam: float) -> torch.Tensor:
    """Eq. 3, ``L_cross(y_hat, (1 - lambda) onehot + lambda y_lwf)``, written out (tests compare with Eq. 2)."""
    target = (1 - lam) * F.one_hot(y, logits.shape[1]).to(logits.dtype) + lam * y_lwf
    return -(target * torch.log_softmax(logits, dim=1)).sum(1).mean()


def two_term_loss(logits: torch.Tensor, y: torch.Tensor, y_lwf: torch.Tensor, lam: float) -> torch.Tensor:
    """Eq. 2, ``(1 - lambda) L_cross(onehot) + lambda L_cross(y_lwf)``."""
    log_p = torch.log_softmax(logits, dim=1)
    return (1 - lam) * F.nll_loss(log_p, y) + lam * -(y_lwf * log_p).sum(1).mean()


__all__ = [
    "lambda_bound", "check_lambda", "decay_lr", "LambdaOvershootWarning", "ClippedImportance", "SISIT", "EWCSIT", "LwFSIT",
    "minibatch_fisher", "lwf_lambdas", "linear_map", "soft_target_loss", "two_term_loss",
]
