"""Experience replay with reservoir sampling (Chaudhry et al. 2019, "On tiny episodic memories").

A buffer of ``M = buffer_size`` samples is kept over the whole stream by reservoir sampling
(:class:`clutils.buffers.ReservoirBuffer`): the ``n``-th sample (from 0) replaces a random slot
with probability ``M / (n + 1)``, so after ``N`` samples each of them is stored with probability
``M / N``. Every step trains on the current batch ``B`` followed by a batch ``B_M`` drawn from the
buffer, with one loss over the concatenation, as in the DER authors' code (``mammoth``)::

    L = CE(f([x_B; x_M]), [y_B; y_M])       (mean over |B| + |B_M| samples)

The current batch enters the buffer after the step (``observe``), never its replayed part.
"""
from __future__ import annotations

import torch

from ...buffers import ReservoirBuffer
from ..registry import register
from .common import ReplayStrategy


@register
class ER(ReplayStrategy):
    """ER: reservoir buffer, current batch + an equal buffer batch in one cross-entropy."""

    name = "er"
    defaults = {"buffer_size": 200, "replay_batch": None}
    positive = frozenset({"buffer_size"})

    def setup(self, model, benchmark) -> None:
        super().setup(model, benchmark)
        self.buffer = ReservoirBuffer(int(self.hp["buffer_size"]), seed=self.seed)

    def extend_batch(self, x, y, task):
        if len(self.buffer) == 0:
            return x, y, task
        index = self.buffer.sample(self.replay_size(len(y)))
        buf = self.buffer
        tasks = self.joined_tasks(task, len(y), buf.task[index], y.device)
        return torch.cat([x, buf.x[index]]), torch.cat([y, buf.y[index]]), tasks

    def observe(self, model, batch) -> None:
        self.buffer.add(batch.x, batch.y, self.task_ids(batch.task))

    def state_dict(self):
        return {"current": int(self.current), "buffer": self.buffer.state_dict()}

    def load_state_dict(self, state) -> None:
        self.current = int(state["current"])
        self.buffer.load_state_dict(state["buffer"])
