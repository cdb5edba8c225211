"""The HAT chapter's helpers (clutils.experiments.hat) and presets on tiny data."""
from __future__ import annotations

import numpy as np
import pytest

from clutils import presets
from clutils.experiments import hat as ex

pytestmark = pytest.mark.usefixtures("one_thread")


def smoke(experiment: str = "hat-forgetting") -> dict:
    settings = presets.get(experiment, "smoke")
    settings.update(dataset="digits", tasks=2, train_per_class=30, test_per_class=10, epochs=2, joint_epochs=2)
    return settings


def test_presets_follow_the_recipe_and_name_every_method():
    for profile in ("smoke", "quick", "paper"):
        s = presets.get("hat-forgetting", profile)
        assert s["optimizer"] == "sgd" and s["lr"] == 0.05 and s["batch_size"] == 64
        assert {"ResNet-SGD", "ResNet-HAT", "ResNet-HAT-BN"} <= set(s["methods"])
        for arch, strategy, masked, bn in s["methods"].values():
            assert masked == (strategy == "hat") and bn in ("shared", "task")
    assert "AlexNet-HAT" in presets.get("hat-forgetting", "paper")["methods"]
    assert presets.get("hat-forgetting", "paper")["tasks"] == 10


def test_recorder_drift_and_forgetting_ratio_on_a_tiny_run():
    settings = smoke()
    bench = ex.benchmark(settings, seed=0)
    result, recorder, strategy = ex.run_method("MLP-HAT", bench, settings, seed=0)
    assert len(recorder.losses) == len(bench) + 1  # before training, then after each task
    assert all(len(row) == len(bench) for row in recorder.losses)
    assert recorder.logits[1][0].shape == (len(bench.tasks[0].test), bench.head_sizes[0])
    assert ex.output_drift(recorder, 0) >= 0.0
    assert 0.0 <= ex.binary_fraction(strategy.per_task[0]) <= 1.0
    joint = ex.joint_reference(bench, settings, "mlp", seed=0)
    assert joint is ex.joint_reference(bench, settings, "mlp", seed=0)  # cached
    random = ex.random_accuracies(bench)
    assert all(0.45 < r < 0.55 for r in random)  # two balanced classes per task
    rho = ex.forgetting_ratio(result, joint, random)
    assert rho.shape == (len(bench),) and np.isfinite(rho).all()


def test_forgetting_ratio_is_zero_for_the_joint_reference_itself_and_minus_one_at_chance():
    class R:
        def __init__(self, m):
            self.R = np.asarray(m)

    joint = np.array([[0.9, 0.5], [0.9, 0.8]])
    random = [0.5, 0.5]
    assert np.allclose(ex.forgetting_ratio(R(joint), joint, random), 0.0)
    chance = np.array([[0.5, 0.5], [0.5, 0.5]])
    assert np.allclose(ex.forgetting_ratio(R(chance), joint, random), -1.0)
    # a joint reference at chance (a smoke run) does not divide by zero
    assert np.isfinite(ex.forgetting_ratio(R(chance), chance, random)).all()


def test_resnet_variants_build_with_the_right_batch_norms():
    settings = smoke()
    bench = ex.benchmark(settings, seed=0)
    per_task = ex.network(bench, settings, "resnet", masked=True, bn="task")
    shared = ex.network(bench, settings, "resnet", masked=True, bn="shared")
    count = lambda m: sum(1 for x in m.modules() if x.__class__.__name__ == "BatchNorm2d")  # noqa: E731
    assert count(per_task) == len(bench) * count(shared)
    plain = ex.network(bench, settings, "resnet", masked=False)
    assert not list(plain.gates) and list(per_task.gates)


def fake_cifar(name, root=None):
    """CIFAR-10 / CIFAR-100 stand-ins: random 3x32x32 images, one training and one test image per class."""
    import torch

    from clutils.data.tensors import Dataset, TensorData

    classes = {"cifar10": 10, "cifar100": 100}[name]
    g = torch.Generator().manual_seed(classes)
    make = lambda: TensorData(torch.randn(classes, 3, 32, 32, generator=g), torch.arange(classes))  # noqa: E731
    return Dataset(name, make(), make(), classes, tuple(f"{name}-{c}" for c in range(classes)), "fake")


def test_paper_profile_builds_the_reports_models_and_takes_one_step_each(monkeypatch):
    import torch

    from clutils.strategies import make
    from clutils.strategies.base import TrainingData
    from clutils.train import make_optimizer, train_task

    monkeypatch.setattr(ex, "load_dataset", fake_cifar)
    settings = presets.get("hat-forgetting", "paper")
    bench = ex.benchmark(settings, seed=0)
    assert len(bench) == 10 and bench.head_sizes == [2] * 5 + [20] * 5 and bench.input_shape == (3, 32, 32)
    assert settings["schedule"] == {"lr_patience": 5, "lr_factor": 3.0, "lr_min": 1e-4, "validation_fraction": 0.1}
    config = ex.train_config(settings, 0, epochs=1)
    assert config.lr_patience == 5 and config.validation_fraction == 0.1
    config.lr_patience = None  # one plain step here
    config.batch_size = 4
    task = bench.tasks[5]  # a CIFAR-100 task of 20 classes
    data = TrainingData(task.train.take(torch.arange(4)))
    for label, (arch, name, masked, bn) in settings["methods"].items():
        model = ex.network(bench, settings, arch, masked, bn)
        if label == "ResNet-HAT-BN":  # ResNet-18: 20 batch norms, one per task: 200 (the report's count)
            assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules()) == ex.PAPER["bn_layers"]
        strategy = make(name, **(settings["hp"] if name == "hat" else {}))
        strategy.setup(model, bench)
        strategy.before_task(model, task)
        before = [p.detach().clone() for p in model.parameters()]
        losses, _ = train_task(model, bench, task, data, strategy, make_optimizer(model, config, 5), config)
        assert len(losses) == 1 and np.isfinite(losses[0]), label
        assert any(not torch.equal(p, q) for p, q in zip(model.parameters(), before)), label


def test_paper_profile_time_estimate_counts_flops_of_every_model(monkeypatch):
    monkeypatch.setattr(ex, "load_dataset", fake_cifar)
    settings = presets.get("hat-forgetting", "paper")
    settings["resnet"] = {"widths": [4, 8, 16, 32], "blocks": [2, 2, 2, 2], "stem_stride": 1}
    settings["alexnet"] = {"width": 0.125, "fc": 32}
    bench = ex.benchmark(settings, seed=0)
    estimate = ex.paper_time_estimate(settings, bench)
    flops = estimate["flops_per_image"]
    assert set(flops) == set(settings["methods"]) and all(f > 0 for f in flops.values())
    assert flops["ResNet-HAT-BN"] == flops["ResNet-HAT"]  # one BN per task, the same arithmetic
    assert {"joint alexnet", "joint resnet"} <= set(estimate["hours"])
    # doubling the epochs doubles the estimate
    again = ex.paper_time_estimate({**settings, "epochs": 400, "joint_epochs": 400}, bench)
    assert again["total_hours"] == pytest.approx(2 * estimate["total_hours"])
