"""The strategy registry: ``make("si", c=0.1)`` builds a strategy by name."""
from __future__ import annotations

from typing import Any

from .base import Strategy

REGISTRY: dict[str, type[Strategy]] = {}


class UnknownStrategyError(ValueError):
    pass


def register(cls: type[Strategy]) -> type[Strategy]:
    """Class decorator: make ``cls`` available under ``cls.name``."""
    if cls.name in REGISTRY and REGISTRY[cls.name] is not cls:
        raise ValueError(f"two strategies are named {cls.name!r}")
    REGISTRY[cls.name] = cls
    return cls


def strategy_names() -> list[str]:
    return sorted(REGISTRY)


def make(name: str, **hyperparameters: Any) -> Strategy:
    """The strategy ``name`` with the paper's defaults, overridden by ``hyperparameters``."""
    if name not in REGISTRY:
        raise UnknownStrategyError(f"unknown strategy {name!r}; choose one of: {', '.join(strategy_names())}")
    return REGISTRY[name](**hyperparameters)
