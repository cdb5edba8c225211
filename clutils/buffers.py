"""Replay memories kept as tensors on the training device, updated in place.

* :class:`ReservoirBuffer`: ``M`` samples over the whole stream by reservoir
  sampling (Vitter's algorithm R; ER and DER of Chaudhry et al. 2019 and
  Buzzega et al. 2020). After ``N >= M`` samples have streamed by, every one of
  them is in the buffer with probability ``M / N``.
* :class:`TaskMemory`: a ring buffer of ``m`` slots per task (GEM's and A-GEM's
  episodic memory): it holds the last ``m`` samples of each task's stream.

Both insert a whole batch with a handful of tensor operations (no per-sample
Python), draw their randomness from their own ``torch.Generator`` on the device,
and put every tensor and the generator's state in ``state_dict``, so a run
resumed from a checkpoint continues bit for bit.
"""
from __future__ import annotations

from typing import Any

import torch


def reservoir_slots(seen: int, batch: int, capacity: int, uniform: torch.Tensor) -> torch.Tensor:
    """The buffer slot of each of ``batch`` new samples (-1: not kept), algorithm R.

    Sample ``i`` of the batch is the stream's ``n = seen + i``-th (from 0). While the buffer
    is not full (``n < M``) it takes slot ``n``; afterwards it draws ``j`` uniformly from
    ``0..n`` and replaces slot ``j`` if ``j < M``: kept with probability ``M / (n + 1)``.
    ``uniform`` holds one draw from U[0, 1) per sample.
    """
    n = seen + torch.arange(batch, device=uniform.device, dtype=torch.float64)
    j = torch.floor(uniform.double() * (n + 1)).long()
    slots = torch.where(n < capacity, n.long(), j)
    return torch.where(slots < capacity, slots, torch.full_like(slots, -1))


def last_writer(slots: torch.Tensor, capacity: int) -> torch.Tensor:
    """Mask of the samples whose write survives: of several samples given one slot, the last.

    Algorithm R processes samples in order, so a later sample overwrites an earlier one
    that took the same slot; an indexed assignment with repeated indices has no defined order.
    """
    kept = slots >= 0
    order = torch.arange(len(slots), device=slots.device)
    winner = torch.full((capacity,), -1, dtype=torch.long, device=slots.device)
    winner.scatter_reduce_(0, slots[kept], order[kept], reduce="amax")
    return kept & (winner[slots.clamp(min=0)] == order)


class ReservoirBuffer:
    """``capacity`` samples (inputs, labels, task ids and optionally logits) by reservoir sampling.

    The tensors are allocated at the first :meth:`add` (shapes and device from that batch).
    """

    def __init__(self, capacity: int, seed: int = 0):
        if isinstance(capacity, bool) or int(capacity) < 1:
            raise ValueError(f"a replay buffer needs a positive capacity, got {capacity!r}")
        self.capacity = int(capacity)
        self.seed = int(seed)
        self.seen = 0  # samples streamed by so far (N)
        self.x: torch.Tensor | None = None
        self.y: torch.Tensor | None = None
        self.task: torch.Tensor | None = None
        self.logits: torch.Tensor | None = None
        self.generator: torch.Generator | None = None

    def __len__(self) -> int:
        return min(self.seen, self.capacity)

    def _allocate(self, x: torch.Tensor, logits: torch.Tensor | None) -> None:
        M, device = self.capacity, x.device
        self.x = torch.zeros((M, *x.shape[1:]), dtype=x.dtype, device=device)
        self.y = torch.zeros(M, dtype=torch.long, device=device)
        self.task = torch.zeros(M, dtype=torch.long, device=device)
        if logits is not None:
            self.logits = torch.zeros((M, logits.shape[1]), dtype=logits.dtype, device=device)
        self.generator = torch.Generator(device=device).manual_seed(self.seed)

    @torch.no_grad()
    def add(self, x: torch.Tensor, y: torch.Tensor, task: torch.Tensor | int | None = None,
            logits: torch.Tensor | None = None) -> torch.Tensor:
        """Stream a batch through the reservoir; returns the slot each sample took (-1: none)."""
        if self.x is None:
            self._allocate(x, logits)
        if (logits is None) != (self.logits is None):
            raise ValueError("give logits with every batch or with none")
        b = len(y)
        uniform = torch.rand(b, generator=self.generator, device=self.x.device)
        slots = reservoir_slots(self.seen, b, self.capacity, uniform)
        keep = last_writer(slots, self.capacity)
        where, rows = slots[keep], keep.nonzero().flatten()
        self.x[where] = x[rows]
        self.y[where] = y[rows]
        self.task[where] = _task_tensor(task, b, y.device)[rows]
        if logits is not None:
            self.logits[where] = logits[rows].to(self.logits.dtype)
        self.seen += b
        return torch.where(keep, slots, torch.full_like(slots, -1))

    def sample(self, size: int) -> torch.Tensor:
        """Indices of ``min(size, len(self))`` distinct stored samples, drawn uniformly."""
        n = len(self)
        if n == 0:
            raise ValueError("the buffer is empty")
        return torch.randperm(n, generator=self.generator, device=self.x.device)[:size]

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"capacity": self.capacity, "seed": self.seed, "seen": self.seen}
        if self.x is not None:
            state.update(x=self.x.clone(), y=self.y.clone(), task=self.task.clone(),
                         generator=self.generator.get_state())
            if self.logits is not None:
                state["logits"] = self.logits.clone()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if int(state["capacity"]) != self.capacity:
            raise ValueError(f"the checkpoint's buffer holds {state['capacity']} samples, this one {self.capacity}")
        self.seed, self.seen = int(state["seed"]), int(state["seen"])
        if "x" not in state:
            self.x = self.y = self.task = self.logits = self.generator = None
            return
        self.x, self.y, self.task = state["x"].clone(), state["y"].clone(), state["task"].clone()
        self.logits = state["logits"].clone() if "logits" in state else None
        self.generator = torch.Generator(device=self.x.device)
        self.generator.set_state(state["generator"].cpu())


class TaskMemory:
    """GEM's episodic memory: a ring buffer of ``per_task`` slots for each of ``n_tasks`` tasks.

    A task's slots hold the last ``per_task`` samples of its stream (FIFO), every batch of
    the task passing through, not only the first.
    """

    def __init__(self, n_tasks: int, per_task: int):
        if n_tasks < 1 or per_task < 1:
            raise ValueError(f"a task memory needs tasks and slots, got {n_tasks} tasks of {per_task} slots")
        self.n_tasks, self.per_task = int(n_tasks), int(per_task)
        self.x: torch.Tensor | None = None
        self.y: torch.Tensor | None = None
        self.count = [0] * self.n_tasks  # samples of each task streamed by so far

    @torch.no_grad()
    def add(self, task: int, x: torch.Tensor, y: torch.Tensor) -> None:
        """Write a batch of ``task`` into its ring (the batch's last ``per_task`` samples if longer)."""
        if self.x is None:
            self.x = torch.zeros((self.n_tasks, self.per_task, *x.shape[1:]), dtype=x.dtype, device=x.device)
            self.y = torch.zeros((self.n_tasks, self.per_task), dtype=torch.long, device=x.device)
        m, b = self.per_task, len(y)
        skip = max(0, b - m)
        slots = (self.count[task] + skip + torch.arange(b - skip, device=x.device)) % m
        self.x[task, slots] = x[skip:]
        self.y[task, slots] = y[skip:]
        self.count[task] += b

    def size(self, task: int) -> int:
        return min(self.count[task], self.per_task)

    def of(self, task: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The stored inputs and labels of ``task``."""
        n = self.size(task)
        return self.x[task, :n], self.y[task, :n]

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"n_tasks": self.n_tasks, "per_task": self.per_task, "count": list(self.count)}
        if self.x is not None:
            state.update(x=self.x.clone(), y=self.y.clone())
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if (int(state["n_tasks"]), int(state["per_task"])) != (self.n_tasks, self.per_task):
            raise ValueError("the checkpoint's task memory has another shape")
        self.count = [int(c) for c in state["count"]]
        self.x = state["x"].clone() if "x" in state else None
        self.y = state["y"].clone() if "y" in state else None


def _task_tensor(task: torch.Tensor | int | None, size: int, device) -> torch.Tensor:
    if isinstance(task, torch.Tensor):
        return task.to(device=device, dtype=torch.long)
    return torch.full((size,), -1 if task is None else int(task), dtype=torch.long, device=device)
