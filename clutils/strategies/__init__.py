"""Continual-learning strategies, each a small class of training-loop hooks.

``make(name, **hyperparameters)`` builds one; ``strategy_names()`` lists them.
"""
from .base import Batch, Strategy, TrainingData, UnknownHyperparameterError
from .registry import REGISTRY, UnknownStrategyError, make, register, strategy_names

# Importing a module registers the strategies it defines.
from . import alasso, baselines, si, ar1, cwr, sit, ewc, lwf, mas  # noqa: E402,F401
from . import spp  # noqa: E402,F401  (SPP and its SGD-F baseline)
from . import hat  # noqa: E402,F401  (HAT chapter)
from . import replay  # noqa: E402,F401  (ER, DER, DER++, A-GEM, GEM, iCaRL: the replay chapter)
from . import generative  # noqa: E402,F401  (deep generative replay: the replay chapter)
from . import pnn  # noqa: E402,F401  (progressive networks: the expansion chapter)
from . import den, l2  # noqa: E402,F401  (DEN and its DNN-L2 baseline: the expansion chapter)

__all__ = [
    "Batch", "Strategy", "TrainingData", "UnknownHyperparameterError",
    "REGISTRY", "UnknownStrategyError", "make", "register", "strategy_names",
]
