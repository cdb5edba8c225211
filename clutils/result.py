"""The outcome of one continual-learning run, saved to and loaded from JSON."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import metrics
from .files import atomic_write


@dataclass
class Result:
    """Everything a run measured.

    ``accuracy_matrix[i][j]`` is the test accuracy (a fraction in [0, 1]) on task
    ``j`` after training task ``i``, for every ``j`` including tasks not trained
    yet; ``initial_accuracy[j]`` is the untrained model's accuracy on task ``j``
    (the ``b`` of the forward-transfer metric). ``confusion[i]`` (optional) is
    the confusion matrix over the dataset's classes after task ``i``, all
    tasks' test sets pooled: rows are true classes, columns predictions.
    ``epoch_losses[i]`` is the mean task loss (cross-entropy) of each epoch of task ``i``,
    ``epoch_penalties[i]`` the mean penalty the strategy added (0 for none), kept apart
    for every strategy.
    """

    config: dict[str, Any]
    benchmark: dict[str, Any]
    strategy: dict[str, Any]
    accuracy_matrix: list[list[float]] = field(default_factory=list)
    initial_accuracy: list[float] = field(default_factory=list)
    confusion: list[list[list[int]]] = field(default_factory=list)
    epoch_losses: list[list[float]] = field(default_factory=list)
    epoch_penalties: list[list[float]] = field(default_factory=list)
    timings: dict[str, list[float]] = field(default_factory=lambda: {"train_seconds": [], "eval_seconds": []})

    @property
    def R(self) -> np.ndarray:
        return np.asarray(self.accuracy_matrix, dtype=float)

    @property
    def tasks_done(self) -> int:
        return len(self.accuracy_matrix)

    def metrics(self) -> dict[str, float]:
        """ACC, BWT, FWT and forgetting of the finished tasks (see :mod:`clutils.metrics`).

        FWT is left out of a class-incremental run (:data:`clutils.metrics.FWT_NOT_APPLICABLE`).
        """
        R = self.R
        if len(R) == 0:
            return {}
        square = R[:, : len(R)]
        out = {
            "acc": metrics.average_accuracy(square),
            "bwt": metrics.backward_transfer(square),
            "forgetting": metrics.forgetting(square),
        }
        if len(R) > 1 and self.initial_accuracy and metrics.forward_transfer_applies(self.benchmark.get("scenario")):
            out["fwt"] = metrics.forward_transfer(square, np.asarray(self.initial_accuracy[: len(R)]))
        return out

    def confusion_matrices(self) -> np.ndarray:
        return np.asarray(self.confusion, dtype=np.int64)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["metrics"] = self.metrics()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Result":
        fields = {k: v for k, v in data.items() if k != "metrics"}
        return cls(**fields)

    def save(self, path: str | Path) -> Path:
        """Write the result as JSON, atomically (a unique temporary file renamed over ``path``)."""
        return atomic_write(path, json.dumps(self.to_dict(), indent=1).encode())

    @classmethod
    def load(cls, path: str | Path) -> "Result":
        return cls.from_dict(json.loads(Path(path).read_text()))
