"""Continual-learning benchmarks built from a :class:`Dataset`.

A benchmark is a sequence of tasks. Each task holds its own train and test
tensors whose labels are already in the label space the model is trained on:

* ``task`` (task-incremental): one head per task, labels ``0..k-1`` inside the
  task, the task id is given at test time;
* ``domain`` (domain-incremental): one shared head of ``k`` outputs, labels
  ``0..k-1`` in every task (permuted MNIST is of this kind);
* ``class`` (class-incremental, the *single-incremental-task* setting of
  Maltoni and Lomonaco): one head over every class, labels are the dataset's
  own class ids.

``Task.classes`` maps a task-local label back to the dataset's class id, so
confusion matrices are always drawn over the dataset's classes.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .errors import DataFileError
from .tensors import Dataset, TensorData

SCENARIOS = ("task", "domain", "class")


@dataclass
class Task:
    index: int
    train: TensorData
    test: TensorData
    classes: tuple[int, ...]  # dataset class id of each task-local label
    name: str

    def to(self, device) -> "Task":
        return Task(self.index, self.train.to(device), self.test.to(device), self.classes, self.name)


@dataclass
class Benchmark:
    name: str
    scenario: str
    tasks: list[Task]
    n_classes: int  # number of dataset classes over all tasks
    input_shape: tuple[int, ...]
    dataset: str
    class_names: tuple[str, ...] = ()
    info: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.tasks)

    @property
    def head_sizes(self) -> list[int]:
        """Output sizes of the model's head(s): one per task for ``task``, else one."""
        if self.scenario == "task":
            return [len(t.classes) for t in self.tasks]
        if self.scenario == "domain":
            return [len(self.tasks[0].classes)]
        return [self.n_classes]

    def to_dataset_labels(self, task: Task, labels: torch.Tensor) -> torch.Tensor:
        """Model labels (targets or predictions) of ``task`` as dataset class ids."""
        if self.scenario == "class":
            return labels
        lookup = torch.tensor(task.classes, device=labels.device)
        return lookup[labels]

    def to(self, device) -> "Benchmark":
        return Benchmark(
            self.name, self.scenario, [t.to(device) for t in self.tasks], self.n_classes,
            self.input_shape, self.dataset, self.class_names, dict(self.info),
        )

    def describe(self) -> dict:
        return {
            "name": self.name,
            "scenario": self.scenario,
            "dataset": self.dataset,
            "tasks": len(self.tasks),
            "classes_per_task": [list(t.classes) for t in self.tasks],
            "train_sizes": [len(t.train) for t in self.tasks],
            "test_sizes": [len(t.test) for t in self.tasks],
            **self.info,
        }


def available_memory() -> int | None:
    """Bytes of memory the system can still hand out (Linux's ``MemAvailable``); None where unknown."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def check_permuted_fits(dataset: Dataset, n_tasks: int) -> None:
    """Refuse ``n_tasks`` permuted copies of ``dataset`` that cannot fit in the memory available now."""
    per_task = sum(split.x.numel() * split.x.element_size() for split in (dataset.train, dataset.test))
    needed, available = n_tasks * per_task, available_memory()
    if available is not None and needed > available:
        raise ValueError(
            f"{n_tasks} permuted tasks of {dataset.name} need {needed / 2 ** 30:.1f} GiB (one permuted copy of "
            f"the data per task) but {available / 2 ** 30:.1f} GiB of memory is available; use fewer tasks "
            f"(at most {max(1, available // max(per_task, 1))}) or fewer samples per class")


def pixel_permutations(n_tasks: int, n_pixels: int, seed: int, first_unpermuted: bool) -> list[torch.Tensor]:
    """One fixed random permutation of the pixels per task, from ``seed``."""
    generator = torch.Generator().manual_seed(seed)
    perms = [torch.randperm(n_pixels, generator=generator) for _ in range(n_tasks)]
    if first_unpermuted:
        perms[0] = torch.arange(n_pixels)
    return perms


def _permute(data: TensorData, perm: torch.Tensor) -> TensorData:
    flat = data.x.reshape(len(data), -1)
    return TensorData(flat[:, perm.to(flat.device)].reshape(data.x.shape), data.y)


def permuted(dataset: Dataset, n_tasks: int, seed: int = 0, first_unpermuted: bool = False) -> Benchmark:
    """Permuted benchmark: every task is the whole dataset under its own pixel permutation.

    The same permutation is applied to the train and the test split of a task.
    Domain-incremental: one shared head over the dataset's classes.
    """
    if n_tasks < 1:
        raise ValueError(f"a benchmark needs at least one task, got {n_tasks}")
    check_permuted_fits(dataset, n_tasks)
    n_pixels = int(torch.tensor(dataset.input_shape).prod())
    perms = pixel_permutations(n_tasks, n_pixels, seed, first_unpermuted)
    classes = tuple(range(dataset.n_classes))
    tasks = [
        Task(i, _permute(dataset.train, p), _permute(dataset.test, p), classes, f"permutation {i + 1}")
        for i, p in enumerate(perms)
    ]
    return Benchmark(
        f"permuted-{dataset.name}", "domain", tasks, dataset.n_classes, dataset.input_shape,
        dataset.name, dataset.class_names,
        {"seed": seed, "first_unpermuted": first_unpermuted, "source": dataset.source},
    )


def class_groups(n_classes: int, n_tasks: int | None, seed: int | None,
                 order: list[int] | None = None, first: int | None = None) -> list[list[int]]:
    """Partition the classes into ``n_tasks`` groups of equal size.

    ``order`` fixes the class order; else it is shuffled from ``seed`` (``seed=None``
    keeps 0..n-1). ``first`` makes the first group that large and splits the rest
    equally (CORe50 NC: 10 classes, then 5 per batch).
    """
    if order is None:
        order = list(range(n_classes))
        if seed is not None:
            generator = torch.Generator().manual_seed(seed)
            order = [order[i] for i in torch.randperm(n_classes, generator=generator).tolist()]
    elif sorted(order) != list(range(n_classes)):
        raise ValueError(f"class order must be a permutation of 0..{n_classes - 1}, got {order}")
    head, rest = ([], order) if first is None else ([order[:first]], order[first:])
    n_rest = (n_tasks or 0) - len(head)
    if n_rest < 1 or len(rest) % n_rest:
        raise ValueError(
            f"cannot split {len(rest)} classes into {n_rest} equal tasks"
            f" ({n_classes} classes; choose a number of tasks that divides them)"
        )
    size = len(rest) // n_rest
    return head + [rest[i * size:(i + 1) * size] for i in range(n_rest)]


def _select(data: TensorData, classes: list[int], scenario: str) -> TensorData:
    size = max(int(data.y.max()), max(classes)) + 1
    lookup = torch.full((size,), -1, dtype=torch.int64, device=data.y.device)
    lookup[torch.tensor(classes, device=data.y.device)] = torch.arange(len(classes), device=data.y.device)
    keep = torch.isin(data.y, torch.tensor(classes, device=data.y.device))
    part = data.take(torch.nonzero(keep).flatten())
    if scenario == "class":
        return part
    return part.with_labels(lookup[part.y])


def split(dataset: Dataset, n_tasks: int, scenario: str = "task", seed: int | None = 0,
          order: list[int] | None = None, first: int | None = None) -> Benchmark:
    """Split benchmark: the dataset's classes partitioned into ``n_tasks`` disjoint tasks."""
    if scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {scenario!r}; choose one of: {', '.join(SCENARIOS)}")
    groups = class_groups(dataset.n_classes, n_tasks, seed, order, first)
    if scenario == "domain" and len({len(g) for g in groups}) > 1:
        raise ValueError("the domain-incremental scenario needs tasks of equal size")
    tasks = [
        Task(i, _select(dataset.train, g, scenario), _select(dataset.test, g, scenario), tuple(g),
             "classes " + ", ".join(str(c) for c in g))
        for i, g in enumerate(groups)
    ]
    for task in tasks:
        for part, data in (("training", task.train), ("test", task.test)):
            if len(data) == 0:
                raise DataFileError(f"{dataset.name} has no {part} samples of classes {', '.join(map(str, task.classes))} "
                                    f"(task {task.index + 1}; data from {dataset.source}): its files lack these classes")
    return Benchmark(
        f"split-{dataset.name}", scenario, tasks, dataset.n_classes, dataset.input_shape,
        dataset.name, dataset.class_names, {"seed": seed, "source": dataset.source},
    )


def concatenate_datasets(first: Dataset, second: Dataset) -> Dataset:
    """One dataset whose classes are ``first``'s then ``second``'s (ids shifted)."""
    if first.input_shape != second.input_shape:
        raise ValueError(f"input shapes differ: {first.input_shape} vs {second.input_shape}")
    shift = first.n_classes

    def join(a: TensorData, b: TensorData) -> TensorData:
        return TensorData(torch.cat([a.x, b.x]), torch.cat([a.y, b.y + shift]))

    return Dataset(
        f"{first.name}+{second.name}", join(first.train, second.train), join(first.test, second.test),
        first.n_classes + second.n_classes, first.class_names + second.class_names,
        f"{first.source}; {second.source}",
    )
