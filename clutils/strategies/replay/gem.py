"""Gradient episodic memory, GEM (Lopez-Paz and Ranzato, NeurIPS 2017).

An episodic memory per task (:class:`clutils.buffers.TaskMemory`: the last ``buffer_size / T``
samples of each task's stream, FIFO). At every step of task ``t`` the gradient ``g_k`` of the
loss on each earlier task's memory is computed; if any ``<g, g_k> < 0`` the step's gradient is
replaced by the closest vector that does not increase any of those losses (Eq. 10-13):

    minimise_z  1/2 ||g - z||^2   subject to  G z >= 0,      G = (g_1, ..., g_{t-1})

through its dual, a QP in ``t - 1`` variables (Eq. 13): with ``P = G G^T + eps I``,

    minimise_v  1/2 v^T P v + (G g)^T v   subject to  v >= gamma,     z = G^T v + g

``gamma`` (``margin``, 0.5) is the paper's bias towards backward transfer, which the authors'
code applies as the lower bound of ``v``; ``eps`` (1e-3) is their ridge on ``P``. The QP is
solved as a non-negative least-squares problem with SciPy (:func:`gem_project`).
"""
from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import nnls

from ...buffers import TaskMemory
from ..registry import register
from .common import ReplayStrategy
from .gradients import flat_grad, loss_gradient, set_flat_grad, trainable


def solve_dual(P: np.ndarray, b: np.ndarray, margin: float) -> np.ndarray:
    """``argmin_{v >= margin} 1/2 v^T P v + b^T v`` for a positive definite ``P``, via NNLS.

    With ``v = margin + u``, ``u >= 0``, the objective is ``1/2 u^T P u + c^T u`` (+ const) with
    ``c = b + P margin``; with ``P = L L^T`` it equals ``1/2 ||L^T u + L^{-1} c||^2`` (+ const).
    """
    t = len(b)
    L = np.linalg.cholesky(P)
    c = b + P @ np.full(t, margin)
    d = -np.linalg.solve(L, c)
    u, _ = nnls(L.T, d)
    return margin + u


def gem_project(g: torch.Tensor, G: torch.Tensor, margin: float = 0.5, eps: float = 1e-3) -> torch.Tensor:
    """GEM's projection of ``g`` given the memories' gradients ``G`` (one row per earlier task)."""
    Gd, gd = G.double().cpu().numpy(), g.double().cpu().numpy()
    P = Gd @ Gd.T
    P = 0.5 * (P + P.T) + eps * np.eye(len(Gd))
    v = solve_dual(P, Gd @ gd, margin)
    return torch.as_tensor(Gd.T @ v + gd, dtype=g.dtype, device=g.device)


@register
class GEM(ReplayStrategy):
    """GEM: per-task memories; the step's gradient is projected so no memory's loss increases."""

    name = "gem"
    defaults = {"buffer_size": 200, "margin": 0.5, "eps": 1e-3}
    positive = frozenset({"buffer_size"})

    def setup(self, model, benchmark) -> None:
        super().setup(model, benchmark)
        self.memory = TaskMemory(len(benchmark), max(1, int(self.hp["buffer_size"]) // len(benchmark)))
        self.projected = 0

    def after_backward(self, model) -> None:
        if self.current == 0:
            return
        params = trainable(model)
        g = flat_grad(params)
        G = torch.stack([loss_gradient(model, params, *self.memory.of(k), k if self.multi_head else None)
                         for k in range(self.current)])
        if bool((G @ g < 0).any()):
            self.projected += 1
            set_flat_grad(params, gem_project(g, G, self.hp["margin"], self.hp["eps"]))

    def observe(self, model, batch) -> None:
        self.memory.add(self.current, batch.x, batch.y)

    def state_dict(self):
        return {"current": int(self.current), "projected": int(self.projected), "memory": self.memory.state_dict()}

    def load_state_dict(self, state) -> None:
        self.current, self.projected = int(state["current"]), int(state["projected"])
        self.memory.load_state_dict(state["memory"])
