"""What the replay strategies share: the task ids of replayed samples and the buffer's seed."""
from __future__ import annotations

import torch

from ..base import Strategy

#: Targets of samples that ride along in the step's forward pass but take no part in its
#: cross-entropy (``F.cross_entropy``'s default ``ignore_index``): DER's logit-matched samples.
IGNORE = -100


class ReplayStrategy(Strategy):
    """Tracks the task being trained and builds task-id tensors for mixed batches."""

    def setup(self, model, benchmark) -> None:
        super().setup(model, benchmark)
        self.current = 0
        # The loop seeds torch with TrainConfig.seed right before setup: the buffer's draws follow it.
        self.seed = torch.initial_seed() % (2 ** 63)

    def before_task(self, model, task) -> None:
        self.current = task.index

    @property
    def multi_head(self) -> bool:
        return self.benchmark is not None and self.benchmark.scenario == "task"

    def joined_tasks(self, task: int | torch.Tensor | None, size: int, replayed: torch.Tensor,
                     device) -> torch.Tensor | None:
        """The task argument of ``size`` current samples followed by replayed ones (task ids ``replayed``).

        Only a multi-head model (task-incremental) reads task ids; the others get ``None``.
        """
        if not self.multi_head:
            return None
        current = task if isinstance(task, torch.Tensor) else torch.full((size,), int(task), dtype=torch.long,
                                                                              device=device)
        return torch.cat([current.to(device=device, dtype=torch.long), replayed])

    def replay_size(self, batch: int) -> int:
        """Replayed samples per step: ``replay_batch``, or as many as the current batch (None)."""
        size = self.hp.get("replay_batch")
        return batch if size is None else int(size)

    def task_ids(self, task: int | torch.Tensor | None) -> int | torch.Tensor:
        """The task id(s) to store with a current batch."""
        return task if isinstance(task, torch.Tensor) else self.current
