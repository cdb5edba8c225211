"""Benchmarks: permutations, splits, scenarios' label spaces, class orders and subsets.

Built on scikit-learn's bundled ``digits`` (no download) and on synthetic datasets.
"""
from __future__ import annotations

import pytest
import torch

from clutils.data import datasets as datasets_mod
from clutils.data.benchmarks import class_groups, permuted, pixel_permutations, split
from clutils.data.datasets import load_dataset
from clutils.data.named import BENCHMARKS, UnknownBenchmarkError, benchmark_names, make_benchmark
from clutils.data.tensors import Dataset, TensorData


@pytest.fixture(scope="module")
def digits() -> Dataset:
    return load_dataset("digits")


def unique_pixels(n_train: int = 6, n_test: int = 4, n_classes: int = 2) -> Dataset:
    """Every image holds 0..63 plus 1000 * its row: each pixel value tells where it came from."""
    def make(n: int, offset: int) -> TensorData:
        x = torch.arange(64, dtype=torch.float32).repeat(n, 1) + 1000.0 * torch.arange(offset, offset + n)[:, None]
        return TensorData(x.reshape(n, 1, 8, 8), torch.arange(n) % n_classes)

    return Dataset("unique", make(n_train, 0), make(n_test, n_train), n_classes)


def recovered_permutations(data: TensorData, offset: int) -> torch.Tensor:
    """For each image, the source pixel of every output pixel."""
    flat = data.x.reshape(len(data), -1)
    rows = torch.arange(offset, offset + len(data), dtype=torch.float32)[:, None]
    return (flat - 1000.0 * rows).round().long()


# ------------------------------------------------------------------ permuted


def test_permutations_are_bijections_shared_by_train_and_test():
    data = unique_pixels()
    bench = permuted(data, 4, seed=3)
    seen = []
    for task in bench.tasks:
        train = recovered_permutations(task.train, 0)
        test = recovered_permutations(task.test, 6)
        perm = train[0]
        assert sorted(perm.tolist()) == list(range(64))  # a bijection of the 64 pixels
        assert (train == perm).all() and (test == perm).all()  # one permutation for train and test
        assert torch.equal(task.train.y, data.train.y) and torch.equal(task.test.y, data.test.y)
        seen.append(perm)
    for a in range(4):
        for b in range(a + 1, 4):
            assert not torch.equal(seen[a], seen[b])
    # the permutations are the ones pixel_permutations draws from the seed
    for perm, expected in zip(seen, pixel_permutations(4, 64, 3, False)):
        assert torch.equal(perm, expected)


def test_permuted_digits_keep_each_images_pixel_values(digits):
    bench = permuted(digits, 3, seed=0)
    original = digits.train.x.reshape(len(digits.train), -1)
    for task in bench.tasks:
        flat = task.train.x.reshape(len(task.train), -1)
        assert torch.equal(flat.sort(dim=1).values, original.sort(dim=1).values)
        assert not torch.equal(flat, original)
    assert bench.scenario == "domain" and bench.head_sizes == [10]


def test_first_unpermuted():
    data = unique_pixels()
    bench = permuted(data, 3, seed=0, first_unpermuted=True)
    assert torch.equal(bench.tasks[0].train.x, data.train.x)
    assert torch.equal(bench.tasks[0].test.x, data.test.x)
    for task in bench.tasks[1:]:
        assert not torch.equal(task.train.x, data.train.x)
    # the permutations of the later tasks do not depend on the flag
    plain = permuted(data, 3, seed=0)
    assert torch.equal(bench.tasks[1].train.x, plain.tasks[1].train.x)


# --------------------------------------------------------------------- split


@pytest.mark.parametrize("scenario", ["task", "domain", "class"])
def test_split_tasks_are_disjoint_and_cover_every_class(digits, scenario):
    bench = split(digits, 5, scenario, seed=None)
    groups = [set(t.classes) for t in bench.tasks]
    assert set().union(*groups) == set(range(10))
    assert sum(len(g) for g in groups) == 10  # disjoint
    assert [list(t.classes) for t in bench.tasks] == [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9]]
    # every sample lands in exactly one task
    assert sum(len(t.train) for t in bench.tasks) == len(digits.train)
    assert sum(len(t.test) for t in bench.tasks) == len(digits.test)
    for task in bench.tasks:
        for part, full in ((task.train, digits.train), (task.test, digits.test)):
            global_labels = bench.to_dataset_labels(task, part.y)
            assert set(global_labels.tolist()) == set(task.classes)
            keep = torch.isin(full.y, torch.tensor(task.classes))
            assert torch.equal(global_labels, full.y[keep])  # the same samples, in order
            assert torch.equal(part.x, full.x[keep])


def test_scenario_label_spaces(digits):
    task_b = split(digits, 5, "task", seed=None)
    domain_b = split(digits, 5, "domain", seed=None)
    class_b = split(digits, 5, "class", seed=None)
    for t_task, t_domain, t_class in zip(task_b.tasks, domain_b.tasks, class_b.tasks):
        assert set(t_task.train.y.tolist()) == {0, 1}  # local labels
        assert set(t_domain.train.y.tolist()) == {0, 1}
        assert set(t_class.train.y.tolist()) == set(t_class.classes)  # the dataset's class ids
        assert set(t_task.test.y.tolist()) == {0, 1}
        assert set(t_class.test.y.tolist()) == set(t_class.classes)
    assert task_b.head_sizes == [2] * 5
    assert domain_b.head_sizes == [2]
    assert class_b.head_sizes == [10]
    # the local label k of a task means the task's k-th class
    t = task_b.tasks[3]
    assert t.classes == (6, 7)
    assert task_b.to_dataset_labels(t, torch.tensor([0, 1, 1])).tolist() == [6, 7, 7]
    assert class_b.to_dataset_labels(class_b.tasks[3], torch.tensor([6, 7])).tolist() == [6, 7]


def test_class_order_comes_from_the_seed(digits):
    a = class_groups(10, 5, seed=0)
    assert a == class_groups(10, 5, seed=0)
    assert a != class_groups(10, 5, seed=1)
    assert sorted(sum(a, [])) == list(range(10))
    assert class_groups(10, 5, seed=None) == [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9]]
    b0 = split(digits, 5, "class", seed=0)
    b0_again = split(digits, 5, "class", seed=0)
    b1 = split(digits, 5, "class", seed=1)
    assert [t.classes for t in b0.tasks] == [t.classes for t in b0_again.tasks] == [tuple(g) for g in a]
    assert [t.classes for t in b0.tasks] != [t.classes for t in b1.tasks]
    assert class_groups(4, 2, None, order=[3, 1, 0, 2]) == [[3, 1], [0, 2]]
    with pytest.raises(ValueError):
        class_groups(4, 2, None, order=[0, 1, 2, 2])


def test_class_groups_with_a_larger_first_group():
    groups = class_groups(50, 9, seed=None, first=10)
    assert [len(g) for g in groups] == [10] + [5] * 8
    assert groups[0] == list(range(10)) and groups[1] == [10, 11, 12, 13, 14]
    assert sum(groups, []) == list(range(50))
    shuffled = class_groups(50, 9, seed=7, first=10)
    assert sorted(sum(shuffled, [])) == list(range(50)) and shuffled != groups
    with pytest.raises(ValueError):
        class_groups(50, 8, seed=None, first=10)  # 40 classes into 7 tasks
    with pytest.raises(ValueError):
        class_groups(50, 1, seed=None, first=10)  # no task for the other 40


def test_split_with_first_group_has_unequal_heads(digits):
    bench = split(digits, 4, "task", seed=None, first=4)
    assert bench.head_sizes == [4, 2, 2, 2]
    assert set(bench.tasks[0].train.y.tolist()) == {0, 1, 2, 3}
    with pytest.raises(ValueError, match="equal size"):
        split(digits, 4, "domain", seed=None, first=4)


# ------------------------------------------------------------ make_benchmark


def _class_counts(data: TensorData, n: int = 10) -> list[int]:
    return torch.bincount(data.y, minlength=n).tolist()


def test_subsets_are_exact_per_class_and_deterministic_per_seed():
    a = make_benchmark("permuted-mnist", n_tasks=2, dataset="digits", seed=3, train_per_class=20, test_per_class=7)
    b = make_benchmark("permuted-mnist", n_tasks=2, dataset="digits", seed=3, train_per_class=20, test_per_class=7)
    c = make_benchmark("permuted-mnist", n_tasks=2, dataset="digits", seed=4, train_per_class=20, test_per_class=7)
    for task in a.tasks:
        assert _class_counts(task.train) == [20] * 10
        assert _class_counts(task.test) == [7] * 10
    for ta, tb in zip(a.tasks, b.tasks):
        assert torch.equal(ta.train.x, tb.train.x) and torch.equal(ta.train.y, tb.train.y)
        assert torch.equal(ta.test.x, tb.test.x)
    assert not torch.equal(a.tasks[0].train.x, c.tasks[0].train.x)

    s = make_benchmark("split-mnist", dataset="digits", seed=3, train_per_class=20, test_per_class=7)
    assert len(s) == 5 and s.scenario == "task"
    for task in s.tasks:
        assert _class_counts(task.train, 2) == [20, 20]
        assert _class_counts(task.test, 2) == [7, 7]
    assert s.name == "split-mnist on digits"


def test_subset_samples_come_from_the_dataset(digits):
    bench = make_benchmark("split-mnist", n_tasks=1, dataset="digits", seed=0, train_per_class=5, test_per_class=3)
    rows = bench.tasks[0].train.x.reshape(50, -1)
    full = digits.train.x.reshape(len(digits.train), -1)
    for row, label in zip(rows, bench.tasks[0].train.y):
        matches = (full == row).all(dim=1)
        assert matches.any() and (digits.train.y[matches] == label).all()


def test_unknown_benchmark_lists_the_valid_names():
    with pytest.raises(UnknownBenchmarkError) as info:
        make_benchmark("no-such-benchmark")
    for name in benchmark_names():
        assert name in str(info.value)
    assert set(benchmark_names()) == set(BENCHMARKS)


@pytest.mark.parametrize("n_tasks", [0, 3, 11, 20])
def test_impossible_task_counts_are_refused(n_tasks):
    with pytest.raises(ValueError):
        make_benchmark("split-mnist", n_tasks=n_tasks, dataset="digits")


def test_split_cifar10_100_task_limit_is_checked_before_loading(monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("the data should not be loaded")

    monkeypatch.setitem(datasets_mod.LOADERS, "cifar10", fail)
    with pytest.raises(ValueError, match="at most 11"):
        make_benchmark("split-cifar10-100", n_tasks=12)
    with pytest.raises(ValueError):
        make_benchmark("split-cifar10-100", n_tasks=2, dataset="digits")


def test_core50_nc_uses_the_50_objects(monkeypatch):
    """CORe50 NC: 50 object classes, 10 in the first batch, then 5 per batch (on a fake loader)."""
    def fake(root=None, download=None, **options):
        gen = torch.Generator().manual_seed(0)
        y_train = torch.arange(50).repeat(3)
        y_test = torch.arange(50).repeat(2)
        return Dataset("core50-objects", TensorData(torch.randn(150, 3, 4, 4, generator=gen), y_train),
                       TensorData(torch.randn(100, 3, 4, 4, generator=gen), y_test), 50)

    def categories(*args, **kwargs):
        raise AssertionError("core50-nc needs the 50 objects, not the 10 categories")

    monkeypatch.setitem(datasets_mod.LOADERS, "core50-objects", fake)
    monkeypatch.setitem(datasets_mod.LOADERS, "core50", categories)
    bench = make_benchmark("core50-nc", seed=0)
    assert len(bench) == 9 and bench.scenario == "class"
    assert [len(t.classes) for t in bench.tasks] == [10] + [5] * 8
    assert sorted(sum((list(t.classes) for t in bench.tasks), [])) == list(range(50))
    assert bench.head_sizes == [50]
    again = make_benchmark("core50-nc", seed=0)
    other = make_benchmark("core50-nc", seed=1)
    assert [t.classes for t in bench.tasks] == [t.classes for t in again.tasks]
    assert [t.classes for t in bench.tasks] != [t.classes for t in other.tasks]


def _fake_loader(name: str, n_classes: int, seen: dict | None = None):
    """A loader whose images carry their (dataset, class) identity in their pixels."""
    offset = 1000 if name == "cifar100" else 0

    def load(root=None, download=None, **options):
        if seen is not None:
            seen[name] = options
        y_train, y_test = torch.arange(n_classes).repeat(3), torch.arange(n_classes).repeat(2)
        image = lambda y: (y + offset).float().view(-1, 1, 1, 1).expand(-1, 3, 4, 4).clone()  # noqa: E731
        return Dataset(name, TensorData(image(y_train), y_train), TensorData(image(y_test), y_test), n_classes)

    return load


def test_split_cifar10_100_with_classes_per_task_runs_through_both_datasets(monkeypatch):
    """ALASSO's split: CIFAR-10's classes then CIFAR-100's, 3 per task."""
    monkeypatch.setitem(datasets_mod.LOADERS, "cifar10", _fake_loader("cifar10", 10))
    monkeypatch.setitem(datasets_mod.LOADERS, "cifar100", _fake_loader("cifar100", 100))
    bench = make_benchmark("split-cifar10-100", n_tasks=30, classes_per_task=3)
    assert len(bench) == 30 and all(len(t.classes) == 3 for t in bench.tasks)
    identities = [sorted({int(v) for v in t.train.x[:, 0, 0, 0]}) for t in bench.tasks]
    assert identities[0] == [0, 1, 2] and identities[3] == [9, 1000, 1001] and identities[29] == [1077, 1078, 1079]
    classic = make_benchmark("split-cifar10-100", n_tasks=3)  # SI's: CIFAR-10 whole, then groups of 10
    assert [sorted({int(v) for v in t.train.x[:, 0, 0, 0]}) for t in classic.tasks][1] == list(range(1000, 1010))
    with pytest.raises(ValueError, match="at most 36 tasks"):
        make_benchmark("split-cifar10-100", n_tasks=37, classes_per_task=3)


def test_split_tiny_imagenet_takes_six_classes_per_task_and_passes_loader_options(monkeypatch):
    seen = {}
    monkeypatch.setitem(datasets_mod.LOADERS, "tiny-imagenet", _fake_loader("tiny-imagenet", 20, seen))
    bench = make_benchmark("split-tiny-imagenet", n_tasks=3, dataset_options={"size": 32})
    assert seen["tiny-imagenet"] == {"size": 32}
    assert bench.scenario == "task" and [list(t.classes) for t in bench.tasks] == [
        list(range(0, 6)), list(range(6, 12)), list(range(12, 18))]
    assert all(sorted({int(v) for v in t.test.x[:, 0, 0, 0]}) == list(t.classes) for t in bench.tasks)
    with pytest.raises(ValueError, match="4 tasks of 6 classes need 24"):
        make_benchmark("split-tiny-imagenet", n_tasks=4)
    with pytest.raises(ValueError, match="classes_per_task"):
        make_benchmark("split-tiny-imagenet", n_tasks=2, classes_per_task=0)
