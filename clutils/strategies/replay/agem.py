"""Averaged gradient episodic memory, A-GEM (Chaudhry, Ranzato, Rohrbach and Elhoseiny, ICLR 2019).

An episodic memory of ``buffer_size / T`` samples per task (:class:`clutils.buffers.TaskMemory`,
the last samples of each task's stream). At every step of task ``t > 1`` one reference gradient
``g_ref`` is computed on a random batch of the memory of tasks ``1..t-1``, and the gradient ``g``
of the current batch is projected when it would increase the reference loss (Eq. 11)::

    g~ = g - (g . g_ref / g_ref . g_ref) g_ref     if g . g_ref < 0,    else g~ = g

Two bugs of public versions are tested against (``tests/test_replay.py``): the projection
applied to ``g_ref`` instead of ``g``, and a memory filled from the first batch of a task only.
"""
from __future__ import annotations

import torch

from ...buffers import TaskMemory
from ..registry import register
from .common import ReplayStrategy
from .gradients import flat_grad, loss_gradient, set_flat_grad, trainable


def agem_project(g: torch.Tensor, g_ref: torch.Tensor) -> torch.Tensor:
    """Eq. 11: remove from ``g`` its component against ``g_ref`` when they conflict."""
    dot = torch.dot(g, g_ref)
    if dot >= 0:
        return g
    return g - (dot / torch.dot(g_ref, g_ref)) * g_ref


@register
class AGEM(ReplayStrategy):
    """A-GEM: project the step's gradient on the half-space of a memory batch's gradient."""

    name = "a-gem"
    defaults = {"buffer_size": 200, "replay_batch": None}
    positive = frozenset({"buffer_size"})

    def setup(self, model, benchmark) -> None:
        super().setup(model, benchmark)
        self.memory = TaskMemory(len(benchmark), max(1, int(self.hp["buffer_size"]) // len(benchmark)))
        self.generator: torch.Generator | None = None
        self.batch = 0
        self.projected = 0  # steps whose gradient was projected (a diagnostic)

    def reference_batch(self, size: int):
        """A random batch of the memory of tasks ``1..t-1`` with its task argument."""
        m = self.memory
        sizes = [m.size(k) for k in range(self.current)]
        x = torch.cat([m.x[k, :n] for k, n in enumerate(sizes)])
        y = torch.cat([m.y[k, :n] for k, n in enumerate(sizes)])
        if self.generator is None:
            self.generator = torch.Generator(device=x.device).manual_seed(self.seed)
        index = torch.randperm(len(y), generator=self.generator, device=x.device)[:size]
        task = None
        if self.multi_head:
            ids = torch.repeat_interleave(torch.arange(len(sizes), device=x.device), torch.tensor(sizes, device=x.device))
            task = ids[index]
        return x[index], y[index], task

    def extend_batch(self, x, y, task):
        self.batch = len(y)
        return x, y, task

    def after_backward(self, model) -> None:
        if self.current == 0:
            return
        params = trainable(model)
        g = flat_grad(params)
        xr, yr, tr = self.reference_batch(self.replay_size(self.batch))
        g_ref = loss_gradient(model, params, xr, yr, tr)
        projected = agem_project(g, g_ref)
        if projected is not g:
            self.projected += 1
            set_flat_grad(params, projected)

    def observe(self, model, batch) -> None:
        self.memory.add(self.current, batch.x, batch.y)

    def state_dict(self):
        state = {"current": int(self.current), "projected": int(self.projected), "memory": self.memory.state_dict()}
        if self.generator is not None:
            state["generator"] = self.generator.get_state()
        return state

    def load_state_dict(self, state) -> None:
        self.current, self.projected = int(state["current"]), int(state["projected"])
        self.memory.load_state_dict(state["memory"])
        self.generator = None
        if "generator" in state:
            self.generator = torch.Generator(device=self.memory.x.device)
            self.generator.set_state(state["generator"].cpu())
