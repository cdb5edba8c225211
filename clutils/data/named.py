"""The benchmarks the papers use, by name: ``make_benchmark("permuted-mnist", n_tasks=10)``."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from . import benchmarks as bm
from .datasets import load_dataset
from .tensors import Dataset, TensorData, subset_fraction, subset_per_class


class UnknownBenchmarkError(ValueError):
    pass


@dataclass(frozen=True)
class BenchmarkSpec:
    kind: str  # "permuted" | "split" | "split-cifar10-100"
    dataset: str
    n_tasks: int
    scenario: str
    description: str
    first: int | None = None  # size of the first class group (CORe50 NC)
    shuffle_classes: bool = False  # class order drawn from the seed


BENCHMARKS: dict[str, BenchmarkSpec] = {
    "permuted-mnist": BenchmarkSpec("permuted", "mnist", 10, "domain",
                                    "MNIST under a fixed pixel permutation per task (SI, ALASSO, SPP)"),
    "split-mnist": BenchmarkSpec("split", "mnist", 5, "task",
                                 "MNIST digits in pairs 0/1, 2/3, ... (SI, SPP)"),
    "split-cifar10-100": BenchmarkSpec("split-cifar10-100", "cifar10+cifar100", 6, "task",
                                       "CIFAR-10 as task 1, then CIFAR-100 in groups of 10 classes (SI, ALASSO)"),
    "icifar100": BenchmarkSpec("split", "cifar100", 10, "class",
                               "CIFAR-100 in 10 batches of 10 classes, one head (AR1 section 4.3)",
                               shuffle_classes=True),
    "core50-nc": BenchmarkSpec("split", "core50-objects", 9, "class",
                               "CORe50 NC: its 50 objects as classes, 10 in the first batch then 5 per batch (AR1)",
                               first=10, shuffle_classes=True),
}


def benchmark_names() -> list[str]:
    return sorted(BENCHMARKS)


def _shrink(dataset: Dataset, train_per_class: int | None, test_per_class: int | None,
            fraction: float | None, seed: int) -> Dataset:
    train, test = dataset.train, dataset.test
    if fraction is not None:
        train = subset_fraction(train, fraction, seed)
    if train_per_class is not None:
        train = subset_per_class(train, train_per_class, seed)
    if test_per_class is not None:
        test = subset_per_class(test, test_per_class, seed + 1)
    if train is dataset.train and test is dataset.test:
        return dataset
    # Per-image metadata in ``extra`` would no longer line up with the subset: drop it.
    return Dataset(dataset.name, TensorData(train.x, train.y), TensorData(test.x, test.y),
                   dataset.n_classes, dataset.class_names, dataset.source)


def make_benchmark(name: str, *, n_tasks: int | None = None, dataset: str | None = None,
                   scenario: str | None = None, seed: int = 0, first_unpermuted: bool = False,
                   train_per_class: int | None = None, test_per_class: int | None = None,
                   fraction: float | None = None, root: str | Path | None = None,
                   download: bool | None = None, device=None) -> bm.Benchmark:
    """Build a named benchmark, optionally on another dataset and with fewer samples.

    ``dataset`` replaces the paper's dataset (e.g. Fashion-MNIST for MNIST offline);
    ``train_per_class``/``test_per_class``/``fraction`` subsample deterministically from
    ``seed``; the class order of shuffled benchmarks and the permutations also come from ``seed``.
    """
    if name not in BENCHMARKS:
        raise UnknownBenchmarkError(f"unknown benchmark {name!r}; choose one of: {', '.join(benchmark_names())}")
    spec = BENCHMARKS[name]
    n_tasks = spec.n_tasks if n_tasks is None else n_tasks
    if n_tasks < 1:
        raise ValueError(f"the number of tasks must be positive, got {n_tasks}")
    scenario = scenario or spec.scenario

    if spec.kind == "split-cifar10-100":
        if dataset is not None:
            raise ValueError(f"{name} is built from CIFAR-10 and CIFAR-100; it takes no dataset override")
        if not 1 <= n_tasks <= 11:
            raise ValueError(f"{name} has at most 11 tasks (CIFAR-10, then 10 groups of CIFAR-100), got {n_tasks}")
        cifar10 = _shrink(load_dataset("cifar10", root, download), train_per_class, test_per_class, fraction, seed)
        cifar100 = _shrink(load_dataset("cifar100", root, download), train_per_class, test_per_class, fraction, seed)
        both = bm.concatenate_datasets(cifar10, cifar100)
        order = list(range(both.n_classes))
        groups = [order[:10]] + [order[10 + 10 * i: 20 + 10 * i] for i in range(n_tasks - 1)]
        used = sum(groups, [])
        # Keep only the classes of the first n_tasks tasks, in the fixed order.
        result = bm.split(_only(both, used), len(groups), scenario, seed=None,
                          order=list(range(len(used))))
        result.name = name
        return result.to(device) if device is not None else result

    data = _shrink(load_dataset(dataset or spec.dataset, root, download),
                   train_per_class, test_per_class, fraction, seed)
    if spec.kind == "permuted":
        result = bm.permuted(data, n_tasks, seed=seed, first_unpermuted=first_unpermuted)
    else:
        first = spec.first if dataset is None else None
        result = bm.split(data, n_tasks, scenario, seed=seed if spec.shuffle_classes else None, first=first)
    result.name = name if dataset is None else f"{name} on {data.name}"
    return result.to(device) if device is not None else result


def _only(dataset: Dataset, classes: list[int]) -> Dataset:
    """Keep ``classes`` and renumber them 0..len-1 in the given order."""
    import torch

    def keep(d: TensorData) -> TensorData:
        lookup = torch.full((dataset.n_classes,), -1, dtype=torch.int64)
        lookup[torch.tensor(classes)] = torch.arange(len(classes))
        mask = lookup[d.y.cpu()] >= 0
        index = torch.nonzero(mask).flatten()
        part = d.take(index)
        return part.with_labels(lookup.to(part.y.device)[part.y])

    names = tuple(dataset.class_names[c] for c in classes) if dataset.class_names else ()
    return Dataset(dataset.name, keep(dataset.train), keep(dataset.test), len(classes), names, dataset.source)
