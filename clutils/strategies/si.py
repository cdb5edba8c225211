"""Synaptic Intelligence (Zenke, Poole and Ganguli, ICML 2017).

During task ``mu`` each parameter accumulates its contribution to the drop of
the task loss along the optimisation path,

    w_k = - sum_steps g_k(t) * delta_k(t),

with ``g`` the gradient of the *unregularised* task loss and ``delta`` the
step the optimiser really took. At the end of the task

    Omega_k <- Omega_k + relu( w_k / ((theta_k(end) - theta_k(start))^2 + xi) )

and the next tasks minimise ``L + c * sum_k Omega_k (theta_k - theta*_k)^2``.
``xi = 0.1`` and ``c = 0.1`` are the authors' settings for permuted MNIST.
"""
from __future__ import annotations

import torch

from .base import parameters_of
from .quadratic import QuadraticPenalty
from .registry import register


class PathIntegral:
    """The running sum ``w = -sum g * delta`` of one task, updated with fused foreach ops."""

    def __init__(self, source: torch.nn.Module | dict[str, torch.nn.Parameter]):
        """``source``: a model (all its trainable parameters) or the named parameters to follow."""
        named = parameters_of(source) if isinstance(source, torch.nn.Module) else dict(source)
        self.names = list(named)
        self.params = list(named.values())
        self.start = [p.detach().clone() for p in self.params]
        self.previous = [p.detach().clone() for p in self.params]
        self.grad = [torch.zeros_like(p) for p in self.params]
        self.w = [torch.zeros_like(p) for p in self.params]

    def record_gradient(self) -> None:
        grads = [p.grad for p in self.params]
        if all(g is not None for g in grads):
            torch._foreach_copy_(self.grad, grads)
            return
        for buffer, g in zip(self.grad, grads):  # another task's head has no gradient
            if g is None:
                buffer.zero_()
            else:
                buffer.copy_(g)

    def record_step(self) -> None:
        current = [p.detach() for p in self.params]
        # previous <- previous - current = -delta, in place (no new buffers every step)
        torch._foreach_sub_(self.previous, current)
        torch._foreach_addcmul_(self.w, self.grad, self.previous)  # w += g * (-delta)
        torch._foreach_copy_(self.previous, current)

    def contribution(self) -> dict[str, torch.Tensor]:
        return dict(zip(self.names, self.w))

    def displacement(self) -> dict[str, torch.Tensor]:
        """theta(end) - theta(start) of this task."""
        return {n: p.detach() - s for n, p, s in zip(self.names, self.params, self.start)}


@register
class SI(QuadraticPenalty):
    """Synaptic Intelligence: path-integral importance, quadratic penalty (see module docstring)."""

    name = "si"
    defaults = {"c": 0.1, "xi": 0.1}
    positive = frozenset({"xi"})  # divides: w / (Delta^2 + xi)
    needs_task_gradient = True

    def before_task(self, model, task) -> None:
        self.path = PathIntegral(model)

    def after_task_backward(self, model) -> None:
        self.path.record_gradient()

    def after_step(self, model) -> None:
        self.path.record_step()

    def task_importance(self) -> dict[str, torch.Tensor]:
        """relu(w / (Delta^2 + xi)) of the task just finished."""
        w = self.path.contribution()
        delta = self.path.displacement()
        return {n: torch.relu(w[n] / (delta[n].pow(2) + self.hp["xi"])) for n in w}

    def after_task(self, model, task, data) -> None:
        new = self.task_importance()
        total = {n: self.importance.get(n, 0) + v for n, v in new.items()}
        self.consolidate(model, total)
