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
