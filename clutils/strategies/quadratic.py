"""Quadratic consolidation: the penalty ``strength * sum_k Omega_k (theta_k - theta*_k)^2``.

EWC, SI and MAS differ only in how the importance ``Omega`` is measured; they
share the anchor ``theta*`` (the weights after the previous task) and this
penalty.

The penalty's gradient is known in closed form, ``2 * strength * Omega *
(theta - theta*)``, so it is added straight to ``.grad`` with two fused
multi-tensor ops after the task loss's backward pass instead of being built
and differentiated by autograd at every step (a third of the step time of a
small MLP). ``penalty()`` still returns the differentiable value, for reports
and for the tests that check the two agree.
"""
from __future__ import annotations

from contextlib import contextmanager

import torch

from .base import Strategy, clone_parameters, parameters_of


@contextmanager
def weights_set_to(model: torch.nn.Module, weights: dict[str, torch.Tensor]):
    """Temporarily give ``model``'s parameters the values in ``weights`` (by name)."""
    params = parameters_of(model)
    saved = {n: params[n].detach().clone() for n in weights}
    with torch.no_grad():
        for n, value in weights.items():
            params[n].copy_(value)
    try:
        yield model
    finally:
        with torch.no_grad():
            for n, value in saved.items():
                params[n].copy_(value)


class QuadraticPenalty(Strategy):
    """Base class: keeps ``importance`` and ``anchor`` per parameter name.

    Subclasses whose importance is a pass over the task's data (EWC's Fisher,
    MAS) implement :meth:`measure` and set ``measures_after_task``. After the
    benchmark's final task no later task reads the importance, so that pass is
    deferred: it runs, at the final task's weights, only if ``importance`` or
    ``state_dict()`` is asked for (a plot, a checkpoint), not as part of every run.
    """

    strength_name = "c"  # the hyperparameter that scales the penalty
    applies_penalty_gradient = True
    measures_after_task = False

    def setup(self, model, benchmark) -> None:
        super().setup(model, benchmark)
        self._importance: dict[str, torch.Tensor] = {}
        self.anchor: dict[str, torch.Tensor] = {}
        self._lists = None
        self._deferred = None

    @property
    def importance(self) -> dict[str, torch.Tensor]:
        """Omega per parameter name (measuring a deferred final task first)."""
        if getattr(self, "_deferred", None) is not None:
            model, task, data, weights = self._deferred
            self._deferred = None
            with weights_set_to(model, weights):
                self.consolidate(model, self.measure(model, task, data))
        return self._importance

    @importance.setter
    def importance(self, value: dict[str, torch.Tensor]) -> None:
        self._importance = value
        self._deferred = None

    def measure(self, model, task, data) -> dict[str, torch.Tensor]:
        """The importance after ``task``, combined with the old one (``measures_after_task``)."""
        raise NotImplementedError

    def after_task(self, model, task, data) -> None:
        if not self.measures_after_task:
            return
        if self.benchmark is not None and task.index == len(self.benchmark) - 1:
            self._deferred = (model, task, data, clone_parameters(model))
            return
        self.consolidate(model, self.measure(model, task, data))

    @property
    def strength(self) -> float:
        return float(self.hp[self.strength_name])

    def penalty(self, model, batch):
        """``strength * sum_k Omega_k (theta_k - theta*_k)^2`` (None before the first consolidation)."""
        if not self.importance:
            return None
        params = parameters_of(model)
        total = sum((self.importance[n] * (params[n] - self.anchor[n]).pow(2)).sum() for n in self.importance)
        return self.strength * total

    def before_task(self, model, task) -> None:
        super().before_task(model, task)
        self.invalidate_gradient_cache()  # which parameters train may change between tasks

    @property
    def gradient_scale(self) -> float:
        """``k`` in the penalty's gradient ``k * Omega * (theta - theta*)``: ``2 * strength``."""
        return 2 * self.strength

    def invalidate_gradient_cache(self) -> None:
        """Forget the per-step lists (after a new importance or anchor, or a new task)."""
        self._lists = None

    def _gradient_lists(self, model):
        """The parameters, ``k Omega`` and ``k Omega theta*``, built once per task and importance."""
        params = dict(model.named_parameters())
        names = [n for n in self.importance if n in params and params[n].requires_grad]
        if not names:
            return [], [], []
        # A tensor factor, not a Python float: a huge strength then overflows to inf (and the
        # loop reports the divergence) instead of failing to convert to float32.
        first = params[names[0]]
        factor = torch.tensor(self.gradient_scale, dtype=first.dtype, device=first.device)
        scaled = torch._foreach_mul([self.importance[n] for n in names], factor)
        pulls = torch._foreach_mul(scaled, [self.anchor[n] for n in names])
        return [params[n] for n in names], scaled, pulls

    @torch.no_grad()
    def after_backward(self, model) -> None:
        """``grad += k * Omega * (theta - theta*)``, the penalty's gradient, in two fused operations.

        It is computed as ``grad += (k Omega) * theta - (k Omega theta*)``, both factors fixed
        for the task, so a step reads each parameter once and allocates nothing.
        """
        if not self.importance:
            return
        if self._lists is None:
            self._lists = self._gradient_lists(model)
        params, scaled, pulls = self._lists
        # A parameter without a gradient (another task's head) is not trained now and sits
        # at its anchor: nothing to add.
        used = [i for i, p in enumerate(params) if p.grad is not None]
        if not used:
            return
        if len(used) < len(params):
            params, scaled, pulls = ([v[i] for i in used] for v in (params, scaled, pulls))
        grads = [p.grad for p in params]
        torch._foreach_addcmul_(grads, scaled, [p.detach() for p in params])
        torch._foreach_sub_(grads, pulls)

    def consolidate(self, model, new_importance: dict[str, torch.Tensor]) -> None:
        """Set the importance (already combined with the old one) and re-anchor at the current weights."""
        self.importance = new_importance
        self.anchor = clone_parameters(model)
        self.invalidate_gradient_cache()

    def state_dict(self):
        state = {f"importance.{n}": v for n, v in self.importance.items()}
        state.update({f"anchor.{n}": v for n, v in self.anchor.items()})
        return state

    def load_state_dict(self, state) -> None:
        self.importance, self.anchor, self._lists = {}, {}, None
        for key, value in state.items():
            kind, name = key.split(".", 1)
            getattr(self, kind)[name] = value
