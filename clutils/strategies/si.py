"""Synaptic Intelligence (Zenke, Poole and Ganguli, ICML 2017).

During task ``mu`` each parameter accumulates its contribution to the drop of
the task loss along the optimisation path,

    w_k = - sum_steps g_k(t) * delta_k(t),

with ``g`` the gradient of the *unregularised* task loss and ``delta`` the
step the optimiser really took. At the end of the task

    Omega_k <- relu( Omega_k + w_k / ((theta_k(end) - theta_k(start))^2 + xi) )

and the next tasks minimise ``L + c * sum_k Omega_k (theta_k - theta*_k)^2``.
``xi = 0.1`` and ``c = 0.1`` are the authors' settings for permuted MNIST.

Where the relu goes (``omega_relu``): the paper's Eq. 5 has none (a weight that
moved uphill gets a negative importance); the authors' code (``pathint``)
applies it to the running sum, so a task's negative contribution lowers the
importance the earlier tasks gave a weight, down to zero. That is the default,
``omega_relu="sum"``. ``"task"`` clips each task's contribution before adding it
(what this module did before, never lowering an importance), ``"none"`` is
Eq. 5 to the letter.
"""
from __future__ import annotations

import torch

from .base import parameters_of
from .quadratic import QuadraticPenalty
from .registry import register


OMEGA_RELU = ("sum", "task", "none")


def accumulate_importance(old: torch.Tensor | None, new: torch.Tensor, relu: str = "sum") -> torch.Tensor:
    """SI's ``Omega + new`` with the relu where ``relu`` says (see the module docstring)."""
    if relu not in OMEGA_RELU:
        raise ValueError(f"omega_relu must be one of {OMEGA_RELU}, got {relu!r}")
    if relu == "task":
        new = torch.relu(new)
    total = new if old is None else old + new
    return torch.relu(total) if relu == "sum" else total


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
    defaults = {"c": 0.1, "xi": 0.1, "omega_relu": "sum"}
    positive = frozenset({"xi"})  # divides: w / (Delta^2 + xi)
    needs_task_gradient = True

    def __init__(self, **hyperparameters):
        super().__init__(**hyperparameters)
        if self.hp["omega_relu"] not in OMEGA_RELU:
            raise ValueError(f"omega_relu must be one of {OMEGA_RELU}, got {self.hp['omega_relu']!r}")

    def before_task(self, model, task) -> None:
        self.path = PathIntegral(model)

    def after_task_backward(self, model) -> None:
        self.path.record_gradient()

    def after_step(self, model) -> None:
        self.path.record_step()

    def task_importance(self) -> dict[str, torch.Tensor]:
        """``w / (Delta^2 + xi)`` of the task just finished (signed: the relu comes with the sum)."""
        w = self.path.contribution()
        delta = self.path.displacement()
        return {n: w[n] / (delta[n].pow(2) + self.hp["xi"]) for n in w}

    def after_task(self, model, task, data) -> None:
        relu = self.hp["omega_relu"]
        total = {n: accumulate_importance(self.importance.get(n), v, relu) for n, v in self.task_importance().items()}
        self.consolidate(model, total)
