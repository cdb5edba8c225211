"""Quadratic consolidation: the penalty ``strength * sum_k Omega_k (theta_k - theta*_k)^2``.

EWC, SI and MAS differ only in how the importance ``Omega`` is measured; they
share the anchor ``theta*`` (the weights after the previous task) and this
penalty.
"""
from __future__ import annotations

import torch

from .base import Strategy, clone_parameters, parameters_of


class QuadraticPenalty(Strategy):
    """Base class: keeps ``importance`` and ``anchor`` per parameter name."""

    strength_name = "c"  # the hyperparameter that scales the penalty

    def setup(self, model, benchmark) -> None:
        super().setup(model, benchmark)
        self.importance: dict[str, torch.Tensor] = {}
        self.anchor: dict[str, torch.Tensor] = {}

    @property
    def strength(self) -> float:
        return float(self.hp[self.strength_name])

    def penalty(self, model, batch):
        if not self.importance:
            return None
        params = parameters_of(model)
        total = sum((self.importance[n] * (params[n] - self.anchor[n]).pow(2)).sum() for n in self.importance)
        return self.strength * total

    def consolidate(self, model, new_importance: dict[str, torch.Tensor]) -> None:
        """Set the importance (already combined with the old one) and re-anchor at the current weights."""
        self.importance = new_importance
        self.anchor = clone_parameters(model)

    def state_dict(self):
        state = {f"importance.{n}": v for n, v in self.importance.items()}
        state.update({f"anchor.{n}": v for n, v in self.anchor.items()})
        return state

    def load_state_dict(self, state) -> None:
        self.importance, self.anchor = {}, {}
        for key, value in state.items():
            kind, name = key.split(".", 1)
            getattr(self, kind)[name] = value
