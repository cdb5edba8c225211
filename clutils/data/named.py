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
    kind: str  # "permuted" | "rotated" | "split" | "split-cifar10-100"
    dataset: str
    n_tasks: int
    scenario: str
    description: str
    first: int | None = None  # size of the first class group (CORe50 NC)
    shuffle_classes: bool = False  # class order drawn from the seed
    # A fixed number of classes per task: the first n_tasks * classes_per_task classes are used
    # (None: all the dataset's classes, divided among the tasks).
    classes_per_task: int | None = None


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
    "split-tiny-imagenet": BenchmarkSpec("split", "tiny-imagenet", 30, "task",
                                         "Tiny ImageNet's classes in wnids order, 6 per task (ALASSO Table E)",
                                         classes_per_task=6),
    # The replay chapter (Buzzega et al. 2020's R-MNIST): each task rotates every image by its own angle.
    "rotated-mnist": BenchmarkSpec("rotated", "mnist", 20, "domain",
                                   "MNIST rotated by a fixed random angle in [0, 180) degrees per task (DER, GEM)"),
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
                   fraction: float | None = None, classes_per_task: int | None = None,
                   root: str | Path | None = None, download: bool | None = None,
                   dataset_options: dict | None = None, device=None) -> bm.Benchmark:
    """Build a named benchmark, optionally on another dataset and with fewer samples.

    ``dataset`` replaces the paper's dataset (e.g. Fashion-MNIST for MNIST offline);
    ``train_per_class``/``test_per_class``/``fraction`` subsample deterministically from
    ``seed``; the class order of shuffled benchmarks and the permutations also come from ``seed``.
    ``classes_per_task`` makes every task that many classes, taken in order from the first
    (``split-cifar10-100`` with 3: ALASSO's 30 tasks of 3 classes over CIFAR-10 then CIFAR-100);
    ``dataset_options`` go to the dataset's loader (e.g. ``{"size": 32}`` for Tiny ImageNet).
    """
    if name not in BENCHMARKS:
        raise UnknownBenchmarkError(f"unknown benchmark {name!r}; choose one of: {', '.join(benchmark_names())}")
    spec = BENCHMARKS[name]
    n_tasks = spec.n_tasks if n_tasks is None else n_tasks
    if n_tasks < 1:
        raise ValueError(f"the number of tasks must be positive, got {n_tasks}")
    scenario = scenario or spec.scenario
    if classes_per_task is not None and (isinstance(classes_per_task, bool) or classes_per_task < 1):
        raise ValueError(f"classes_per_task must be a positive integer, got {classes_per_task!r}")
    per_task = classes_per_task or (spec.classes_per_task if dataset is None else None)
    options = dict(dataset_options or {})

    def load(which: str) -> Dataset:
        return _shrink(load_dataset(which, root, download, **options),
                       train_per_class, test_per_class, fraction, seed)

    if spec.kind == "split-cifar10-100":
        if dataset is not None:
            raise ValueError(f"{name} is built from CIFAR-10 and CIFAR-100; it takes no dataset override")
        if per_task is None and not 1 <= n_tasks <= 11:
            raise ValueError(f"{name} has at most 11 tasks (CIFAR-10, then 10 groups of CIFAR-100), got {n_tasks}")
        _check_fixed_groups(name, n_tasks, per_task, 110)
        both = bm.concatenate_datasets(load("cifar10"), load("cifar100"))
        if per_task is None:  # CIFAR-10 whole, then CIFAR-100 in groups of 10
            groups = [list(range(10))] + [list(range(10 + 10 * i, 20 + 10 * i)) for i in range(n_tasks - 1)]
        else:
            groups = [list(range(per_task * i, per_task * (i + 1))) for i in range(n_tasks)]
        used = sum(groups, [])
        # Keep only the classes of the first n_tasks tasks, in the fixed order.
        result = bm.split(_only(both, used), n_tasks, scenario, seed=None, order=list(range(len(used))))
        result.name = name
        return result.to(device) if device is not None else result

    data = load(dataset or spec.dataset)
    if spec.kind == "permuted":
        result = bm.permuted(data, n_tasks, seed=seed, first_unpermuted=first_unpermuted)
    elif spec.kind == "rotated":
        from .rotated import rotated  # the replay chapter's benchmark, self-contained
        result = rotated(data, n_tasks, seed=seed)
    elif per_task is not None:
        _check_fixed_groups(name, n_tasks, per_task, data.n_classes)
        classes = bm.class_groups(data.n_classes, data.n_classes, seed if spec.shuffle_classes else None)
        used = [group[0] for group in classes][: n_tasks * per_task]
        result = bm.split(_only(data, used), n_tasks, scenario, seed=None, order=list(range(len(used))))
    else:
        first = spec.first if dataset is None else None
        result = bm.split(data, n_tasks, scenario, seed=seed if spec.shuffle_classes else None, first=first)
    result.name = name if dataset is None else f"{name} on {data.name}"
    return result.to(device) if device is not None else result


def _check_fixed_groups(name: str, n_tasks: int, per_task: int | None, n_classes: int) -> None:
    if per_task is not None and n_tasks * per_task > n_classes:
        raise ValueError(f"{name}: {n_tasks} tasks of {per_task} classes need {n_tasks * per_task} classes; "
                         f"the data have {n_classes} (at most {n_classes // per_task} tasks)")


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
