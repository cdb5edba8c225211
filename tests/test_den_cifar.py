"""DEN's CIFAR-100 binary tasks (preset ``den-cifar100``): the task builder, the comparison and the estimate.

The CIFAR-100 path runs for real on a small CIFAR-100-format folder the test writes (the loader checks
its MD5s, patched to the small files' own), no network.
"""
from __future__ import annotations

import hashlib
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from clutils import presets
from clutils.data.datasets import CIFAR, CIFAR_MD5, load_dataset
from clutils.experiments import den as ex


def write_cifar100(folder: Path, train_per_class: int = 3, test_per_class: int = 2) -> dict[str, str]:
    """CIFAR-100's python-version files with a few images of each of the 100 classes; their MD5s."""
    folder.mkdir(parents=True, exist_ok=True)
    train, test, meta, label_key, names_key = CIFAR["cifar100"]
    rng = np.random.default_rng(0)
    for name, per_class in ((train[0], train_per_class), (test[0], test_per_class)):
        labels = np.repeat(np.arange(100), per_class)
        data = rng.integers(0, 256, (len(labels), 3 * 32 * 32), dtype=np.uint8)
        (folder / name).write_bytes(pickle.dumps({"data": data, label_key: labels.tolist(),
                                                  "coarse_labels": (labels // 5).tolist()}))
    (folder / meta).write_bytes(pickle.dumps({names_key: [f"class{i}" for i in range(100)]}))
    return {name: hashlib.md5((folder / name).read_bytes()).hexdigest() for name in [*train, *test, meta]}


@pytest.fixture(scope="module")
def cifar_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    md5 = write_cifar100(root / "cifar-100-python")
    patch = pytest.MonkeyPatch()
    patch.setitem(CIFAR_MD5, "cifar100", md5)  # the small stand-ins are "the original" here
    yield root
    patch.undo()


@pytest.fixture(scope="module")
def settings():
    return {**presets.get("den-cifar100", "smoke"), "dataset": "cifar100", "tasks": 3, "train_per_task": 6,
            "test_per_task": 4, "epochs": 1}


def test_the_paper_profile_is_cifar100_binary_tasks_at_the_papers_scale():
    paper = presets.get("den-cifar100", "paper")
    assert (paper["dataset"], paper["tasks"], paper["run"]) == ("cifar100", 100, True)
    assert paper["hidden"] == [384, 192] and (paper["noise"], paper["rotate"]) == (0.0, False)
    den_hp = paper["methods"]["DEN"][1]
    room = [c - h for c, h in zip(paper["capacity"], paper["hidden"])]
    assert all(r >= paper["tasks"] * (den_hp["k"] + 10) for r in room)  # k new units + max_split copies a task
    assert list(paper["methods"]) == list(presets.get("den-variation", "paper")["methods"])
    for profile in ("smoke", "quick"):
        offline = presets.get("den-cifar100", profile)
        assert not offline["run"] and offline["dataset"] != "cifar100" and "not CIFAR-100" in offline["stand_in"]


def test_cifar100_tasks_come_through_the_loader_unrotated_and_balanced(cifar_root, settings):
    bench = ex.benchmark(settings, seed=0, root=cifar_root)
    source = load_dataset("cifar100", root=cifar_root, download=False)
    assert bench.name == "cifar100 one-vs-rest" and bench.input_shape == (3, 32, 32) and len(bench) == 3
    assert bench.head_sizes == [2, 2, 2]
    for task in bench.tasks:
        c = task.classes[1]
        assert int(task.train.y.sum()) == 3 and len(task.train) == 6  # all 3 positives, as many negatives
        positives = task.train.x[task.train.y == 1]
        own = source.train.x[source.train.y == c]
        # no rotation, no noise: every positive is one of the class's own standardised images
        assert all(any(torch.equal(p, o) for o in own) for p in positives)
        negatives = task.train.x[task.train.y == 0]
        assert not any(torch.equal(n, o) for n in negatives for o in own)


def test_no_task_count_gives_a_task_for_every_class(cifar_root, settings):
    bench = ex.benchmark({**settings, "tasks": None}, seed=1, root=cifar_root)
    assert len(bench) == 100 and sorted(task.classes[1] for task in bench.tasks) == list(range(100))


def test_more_tasks_than_classes_is_an_error(cifar_root, settings):
    with pytest.raises(ValueError, match="101 one-versus-rest tasks asked of cifar100, which has 100 classes"):
        ex.benchmark({**settings, "tasks": 101}, root=cifar_root)


def test_the_comparison_runs_every_method_on_cifar100(cifar_root, settings):
    bench = ex.benchmark(settings, seed=0, root=cifar_root)
    runs, table = ex.run_comparison(settings, bench, seed=0)
    assert list(table.index) == ["DNN-STL", "DNN-MTL", "DNN", "DNN-L2", "DNN-EWC", "PNN", "DEN"]
    assert set(runs) == set(table.index) and table["note"].eq("").all()
    assert table["accuracy"].between(0, 1).all()
    sizes = table["parameters"]
    assert sizes["DNN-STL"] > sizes["DNN"] and sizes["PNN"] > sizes["DNN"]
    den_model = runs["DEN"][2]
    assert sizes["DEN"] == den_model.n_parameters(len(bench)) and den_model.capacity == settings["capacity"]
    assert runs["DEN"][0].R.shape == (3, 3)


def test_the_estimate_counts_each_methods_samples_and_flops():
    paper = presets.get("den-cifar100", "paper")
    e = paper["estimate"]
    table = ex.training_estimate(paper, input_features=e["input_features"],
                                 train_images_per_task=e["train_images_per_task"], tflops=e["tflops"],
                                 step_seconds=e["step_seconds"])
    T, n, E = paper["tasks"], e["train_images_per_task"], paper["epochs"]
    assert table.loc["DNN", "samples seen"] == T * n * E
    assert table.loc["DNN-MTL", "samples seen"] == n * E * T * (T + 1) // 2
    assert table.loc["PNN", "TFLOP"] > 10 * table.loc["DNN", "TFLOP"]  # task t runs through t columns
    assert table.loc["DEN", "TFLOP"] > table.loc["DNN", "TFLOP"]  # computed at its allocated width
    assert (table["GPU minutes (estimate)"] > 0).all()
    fast = ex.training_estimate(paper, input_features=3072, train_images_per_task=n, tflops=1e6, step_seconds=0.0)
    assert fast["GPU minutes (estimate)"].max() < table["GPU minutes (estimate)"].min()
    with pytest.raises(ValueError, match="throughput must be positive"):
        ex.training_estimate(paper, input_features=3072, train_images_per_task=n, tflops=0, step_seconds=1e-3)
