"""The validation split used for tuning: held-out training images, never the test set."""
from __future__ import annotations

import torch

from clutils.data.tensors import TensorData, subset_per_class
from clutils.experiments import ar1 as ex


def labelled(n_per_class: int, classes: int = 3, offset: int = 0) -> TensorData:
    """Samples whose single feature is a unique id (offset + index), so subsets can be compared."""
    y = torch.arange(classes).repeat(n_per_class)
    x = (offset + torch.arange(len(y), dtype=torch.float32)).view(-1, 1)
    return TensorData(x, y)


def test_skip_gives_disjoint_samples_from_the_same_shuffle():
    data = labelled(10)
    first = subset_per_class(data, 4, seed=3)
    second = subset_per_class(data, 4, seed=3, skip=4)
    both = subset_per_class(data, 8, seed=3)
    assert set(first.x.flatten().tolist()).isdisjoint(second.x.flatten().tolist())
    assert set(first.x.flatten().tolist()) | set(second.x.flatten().tolist()) == set(both.x.flatten().tolist())
    assert torch.bincount(second.y).tolist() == [4, 4, 4]


def test_a_validation_benchmark_tests_on_unused_training_images(monkeypatch):
    from clutils.data.tensors import Dataset

    train, test = labelled(20), labelled(20, offset=10_000)
    fake = Dataset("fake", train, test, 3, ("a", "b", "c"), "test")
    monkeypatch.setattr(ex, "load_dataset", lambda name, root=None, **options: fake)
    ex._DATA_CACHE.clear()
    spec = {"kind": "split", "dataset": "fake", "tasks": 3, "train_per_class": 5, "test_per_class": 4,
            "shuffle": False}
    plain = ex.build_benchmark(spec)
    held_out = ex.build_benchmark({**spec, "validation": True})
    ex._DATA_CACHE.clear()
    ids = lambda bench, split: {v for t in bench.tasks for v in getattr(t, split).x.flatten().tolist()}  # noqa: E731
    assert ids(plain, "train") == ids(held_out, "train")  # the same training images
    assert all(v >= 10_000 for v in ids(plain, "test"))  # the real test set
    assert all(v < 10_000 for v in ids(held_out, "test"))  # training images only...
    assert ids(held_out, "test").isdisjoint(ids(held_out, "train"))  # ...that training never sees
    assert len(ids(held_out, "test")) == 3 * 4
