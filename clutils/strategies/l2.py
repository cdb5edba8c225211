"""DNN-L2: an L2 pull to the weights after the previous task (a baseline of the DEN paper, Section 4.1).

Every step adds ``(lam / 2) sum_i (theta_i - theta_i^{t-1})^2`` over the shared
parameters (every parameter but the task heads of a task-incremental model), where ``theta^{t-1}`` are the weights at
the end of the previous task: EWC with every weight equally important.
"""
from __future__ import annotations

import torch

from .base import Batch, Strategy, parameters_of
from .registry import register


@register
class L2(Strategy):
    """The DEN paper's DNN-L2 baseline: ``(lam/2) ||theta - theta^{t-1}||^2`` on the shared parameters."""

    name = "l2"
    defaults = {"lam": 1.0}

    def setup(self, model, benchmark) -> None:
        super().setup(model, benchmark)
        # one head per task (task-incremental): each task's own head is free; a shared head is pulled too
        per_task = benchmark.scenario == "task" and hasattr(model, "output_layers")
        heads = {id(p) for layer in (model.output_layers() if per_task else []) for p in layer.parameters()}
        self.shared = {n for n, p in parameters_of(model).items() if id(p) not in heads}
        self.anchor: dict[str, torch.Tensor] = {}

    def penalty(self, model, batch: Batch) -> torch.Tensor | None:
        if not self.anchor or self.hp["lam"] == 0:
            return None
        params = parameters_of(model)
        return 0.5 * self.hp["lam"] * sum((params[n] - a).pow(2).sum() for n, a in self.anchor.items())

    def after_task(self, model, task, data) -> None:
        params = parameters_of(model)
        self.anchor = {n: params[n].detach().clone() for n in self.shared}

    def state_dict(self):
        return {f"anchor.{n}": v for n, v in self.anchor.items()}

    def load_state_dict(self, state) -> None:
        self.anchor = {k.split(".", 1)[1]: v for k, v in state.items()}
