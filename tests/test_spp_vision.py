"""The runners of the SPP paper's Figures 3 and 9 (clutils.experiments.spp_vision) end to end on tiny
synthetic images: the sequence of datasets on VGG9 (a head per dataset, and one shared head), Caltech-style
groups of unequal size on ResNet-18 with a 2048-unit (here 16-unit) layer per task, and SMT per Eq. 9."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from clutils import metrics, presets
from clutils.data.benchmarks import Benchmark
from clutils.data.tensors import Dataset, TensorData
from clutils.experiments import spp_vision as vision
from clutils.models_resnet import TaskMLPHeads, build_resnet18_model

pytestmark = pytest.mark.usefixtures("one_thread")


def _dataset(name, n_classes, channels, side, per_class, seed):
    g = torch.Generator().manual_seed(seed)

    def part(k):
        y = torch.arange(n_classes).repeat_interleave(k)
        return TensorData(torch.randn(len(y), channels, side, side, generator=g), y)

    return Dataset(name, part(per_class), part(1), n_classes, tuple(str(c) for c in range(n_classes)), "random")


def test_sequence_benchmark_makes_each_dataset_a_task_of_rgb_images_at_one_size():
    grey = _dataset("grey", 3, 1, 28, 4, 0)
    colour = _dataset("colour", 3, 3, 96, 4, 1)
    bench = vision.sequence_benchmark([grey, colour], side=8, train_per_task=5, seed=0)
    assert bench.input_shape == (3, 8, 8) and bench.head_sizes == [3, 3]
    assert [len(t.train) for t in bench.tasks] == [5, 5] and [len(t.test) for t in bench.tasks] == [3, 3]
    assert bench.tasks[1].classes == (3, 4, 5) and bench.class_names[3] == "colour:0"
    first = bench.tasks[0].train.x
    assert torch.equal(first[:, 0], first[:, 2])  # a grey channel repeated
    flat = vision.as_rgb(TensorData(torch.full((1, 1, 28, 28), 0.5), torch.zeros(1, dtype=torch.long)), 8)
    assert torch.allclose(flat.x, torch.full((1, 3, 8, 8), 0.5))
    with pytest.raises(ValueError):
        vision.as_rgb(TensorData(torch.zeros(1, 2, 8, 8), torch.zeros(1, dtype=torch.long)), 8)


def test_visual_sequence_runs_vgg9_with_a_head_per_dataset_and_with_one_shared_head():
    datasets = [_dataset(f"d{i}", 2, 1 + 2 * (i % 2), 8 + 4 * i, 4, i) for i in range(3)]
    bench = vision.sequence_benchmark(datasets, side=8)
    settings = {**presets.get("spp-vision", "smoke")["fig3"], "epochs": 1, "batch_size": 4}
    results = vision.run_visual_sequence(settings, [vision.SHARED_HEAD, "SPP", "SI", "joint"], benchmark=bench)
    assert results[vision.SHARED_HEAD].benchmark["scenario"] == "domain"  # one output layer for all tasks
    assert results["SPP"].benchmark["scenario"] == "task"
    table = vision.curves(results)
    assert set(table.index.get_level_values("method")) == {vision.SHARED_HEAD, "SPP", "SI", "joint"}
    assert table.loc[("SPP", 3), "ACC"] == pytest.approx(100 * np.mean(np.asarray(results["SPP"].R)[-1]))
    assert table["ACC"].between(0, 100).all()
    with pytest.raises(ValueError, match="unknown method"):
        vision.run_visual_sequence(settings, ["SPP-X"], benchmark=bench)


def test_random_groups_are_disjoint_of_the_paper_sizes_and_follow_the_seed():
    groups = vision.random_groups(102, [30, 25, 25, 22], seed=0)
    assert [len(g) for g in groups] == [30, 25, 25, 22]
    assert sorted(c for g in groups for c in g) == list(range(102))
    assert groups != vision.random_groups(102, [30, 25, 25, 22], seed=1)
    with pytest.raises(ValueError):
        vision.random_groups(10, [6, 6], seed=0)


def test_resnet18_model_has_a_hidden_layer_and_classifier_per_task():
    bench = vision.grouped_benchmark(_dataset("caltech-like", 5, 3, 32, 2, 0), [[0, 3, 4], [1, 2]])
    model = build_resnet18_model(bench, seed=0, hidden=16, dropout=0.5)
    assert isinstance(model.head, TaskMLPHeads) and len(model.output_layers()) == 2
    assert model.output_layers()[0][0].out_features == 16
    model.eval()
    assert model(torch.zeros(2, 3, 32, 32), 0).shape == (2, 3)
    assert model(torch.zeros(2, 3, 32, 32), 1).shape == (2, 2)
    with pytest.raises(ValueError, match="scenario"):
        build_resnet18_model(Benchmark("x", "class", bench.tasks, 5, (3, 32, 32), "x"))


def test_caltech_runner_trains_resnet18_on_unequal_groups_and_reports_smt():
    bench = vision.grouped_benchmark(_dataset("caltech-like", 5, 3, 32, 3, 0), [[0, 3, 4], [1, 2]])
    assert bench.tasks[0].train.y.max() == 2 and bench.tasks[0].classes == (0, 3, 4)
    settings = {**presets.get("spp-vision", "smoke")["fig9"], "epochs": 1, "batch_size": 3, "head_hidden": 16}  # no batch of 1 (batch norm at 1 x 1)
    results = vision.run_caltech(settings, ["SPP", "SGD-F", "joint"], benchmark=bench)
    table = vision.curves(results)
    R = np.asarray(results["SPP"].R)
    assert table.loc[("SPP", 2), "SMT"] == pytest.approx(metrics.stability_smt(R))
    assert np.isnan(table.loc[("SPP", 1), "SMT"])
    assert set(table.index.get_level_values("method")) == {"SPP", "SGD-F", "joint"}
    assert results["SPP"].benchmark["classes_per_task"] == [[0, 3, 4], [1, 2]]


def test_the_notebooks_paper_profile_cell_runs_figures_10_3_and_9_on_tiny_benchmarks(monkeypatch):
    """Part 3's vision cell with ``run`` on (the paper profile's branch), its benchmarks replaced by tiny ones."""
    import json
    from pathlib import Path

    import matplotlib
    import pandas as pd

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from IPython.display import Markdown, display

    nb = json.loads((Path(__file__).resolve().parents[1] / "notebooks" / "spp_3_vae_vision.ipynb").read_text())
    [source] = [''.join(c["source"]) for c in nb["cells"]
                if c["cell_type"] == "code" and 'if vision_settings["run"]' in ''.join(c["source"])]
    images = [_dataset(f"d{i}", 2, 3, 8, 3, i) for i in range(2)]
    groups = vision.grouped_benchmark(_dataset("caltech-like", 5, 3, 32, 3, 0), [[0, 3, 4], [1, 2]])
    monkeypatch.setattr(vision, "cifar100_sequence", lambda s, seed: vision.sequence_benchmark(images, 8))
    monkeypatch.setattr(vision, "visual_sequence", lambda s, seed: vision.sequence_benchmark(images, 8))
    monkeypatch.setattr(vision, "caltech_benchmark", lambda s, seed: groups)
    paper = presets.get("spp-vision", "paper")
    tiny = {"epochs": 1, "batch_size": 3}
    settings = {**paper, "fig10": {**paper["fig10"], **tiny}, "fig3": {**paper["fig3"], **tiny},
                "fig9": {**paper["fig9"], **tiny, "head_hidden": 16},
                "fig10_methods": ["SPP", "joint"], "fig3_methods": [vision.SHARED_HEAD, "SPP", "joint"],
                "fig9_methods": ["SPP", "joint"]}
    assert settings["run"]
    shown = []
    monkeypatch.setattr(plt, "show", lambda: shown.append(plt.gcf()))
    namespace = {"vision": vision, "vision_settings": settings, "pd": pd, "plt": plt, "display": display,
                 "Markdown": Markdown, "profile": "paper", "seed": 0, "device": "cpu"}
    exec(compile(source, "spp_3_vae_vision.ipynb", "exec"), namespace)
    assert len(shown) == 3  # Figures 10, 3 and 9
    assert set(namespace["fig9"].columns) >= {"ACC", "SMT", "BWT"}
    assert list(namespace["final3"].index) == [vision.SHARED_HEAD, "SPP", "joint"]
    plt.close("all")


def test_random_flip_mirrors_images_in_training_mode_only():
    from clutils.models_resnet import RandomFlip

    x = torch.arange(2 * 3 * 2 * 4, dtype=torch.float32).view(2, 3, 2, 4)
    always = RandomFlip(1.0)
    assert torch.equal(always(x), x.flip(-1))
    always.eval()
    assert torch.equal(always(x), x)
    torch.manual_seed(0)
    many = torch.randn(400, 1, 1, 2)
    out = RandomFlip(0.5)(many)
    flipped = (out[:, 0, 0, 0] == many[:, 0, 0, 1]).float().mean()
    assert 0.3 < flipped < 0.7
    with pytest.raises(ValueError):
        RandomFlip(1.5)
