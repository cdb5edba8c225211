"""The DEN chapter's helpers (clutils.experiments.den) and preset, on digits."""
from __future__ import annotations

import pytest
import torch

from clutils import presets
from clutils.experiments import den as ex
from clutils.strategies import REGISTRY


@pytest.fixture(scope="module")
def settings():
    return {**presets.get("den-variation", "smoke"), "tasks": 3, "train_per_task": 40, "test_per_task": 20,
            "epochs": 1}


@pytest.fixture(scope="module")
def bench(settings):
    return ex.benchmark(settings, dataset="digits", seed=0)


def test_variation_rotates_and_noises_deterministically():
    x = torch.zeros(4, 1, 8, 8)
    x[:, :, :, 3:5] = 1.0  # a vertical bar
    a, b = ex.variation(x, seed=1, noise=0.0), ex.variation(x, seed=1, noise=0.0)
    assert torch.equal(a, b) and not torch.allclose(a, x, atol=1e-3)
    noisy = ex.variation(x, seed=1, noise=0.5, rotate=False)
    assert 0.3 < (noisy - x).std().item() < 0.7


def test_tasks_are_balanced_one_versus_rest(bench, settings):
    assert len(bench) == 3 and bench.scenario == "task" and bench.head_sizes == [2, 2, 2]
    positives = set()
    for task in bench.tasks:
        assert len(task.train) == settings["train_per_task"] and int(task.train.y.sum()) == len(task.train) // 2
        assert int(task.test.y.sum()) == len(task.test) // 2
        positives.add(task.classes[1])
    assert len(positives) == 3  # a different class per task


def test_methods_mark_a_missing_strategy(settings):
    listed = {m.label: m for m in ex.methods(settings)}
    assert list(listed) == ["DNN-STL", "DNN-MTL", "DNN", "DNN-L2", "DNN-EWC", "PNN", "DEN"]
    assert listed["PNN"].available == ("pnn" in REGISTRY)
    assert listed["DEN"].available and listed["DEN"].strategy == "den"
    if not listed["PNN"].available:
        with pytest.raises(KeyError, match="not yet in clutils"):
            ex.run_method(listed["PNN"], None, settings)


def test_network_sizes(bench, settings):
    listed = {m.label: m for m in ex.methods(settings)}
    model = ex.network(bench, settings, listed["DNN"])
    heads = sum(p.numel() for layer in model.output_layers() for p in layer.parameters())
    body = sum(p.numel() for p in model.parameters()) - heads
    assert ex.network_size(model, listed["DNN"], bench) == body + heads
    assert ex.network_size(model, listed["DNN-STL"], bench) == len(bench) * body + heads
    result, size, den_model, strategy = ex.run_method(listed["DEN"], bench, settings, seed=0)
    assert size == den_model.n_parameters(len(bench)) == strategy.log[-1]["parameters"]
    assert den_model.capacity == list(settings["capacity"])
    assert 0.0 <= ex.average_accuracy(result) <= 1.0
    assert len(ex.retention(result, 1)) == len(bench) - 1
