"""The rotated benchmark of the replay chapter (``rotated-mnist``, Buzzega et al.'s R-MNIST)."""
from __future__ import annotations

import pytest
import torch

from clutils.data.named import make_benchmark
from clutils.data.rotated import rotate, task_angles


def test_rotation_by_zero_is_the_identity_and_four_quarter_turns_come_back():
    images = torch.rand(5, 1, 12, 12, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(rotate(images, 0.0), images, atol=1e-5)
    turned = images
    for _ in range(4):
        turned = rotate(turned, 90.0)
    assert torch.allclose(turned, images, atol=1e-4)
    # a quarter turn of a square grid is a transposition and a flip
    assert torch.allclose(rotate(images, 90.0), torch.rot90(images, 1, dims=(2, 3)), atol=1e-4) or \
        torch.allclose(rotate(images, 90.0), torch.rot90(images, -1, dims=(2, 3)), atol=1e-4)


def test_rotate_refuses_non_images():
    with pytest.raises(ValueError, match="images"):
        rotate(torch.zeros(4, 64), 30.0)


def test_rotated_benchmark_is_domain_incremental_with_one_angle_per_task_from_the_seed():
    bench = make_benchmark("rotated-mnist", dataset="digits", n_tasks=3, seed=5, train_per_class=10, test_per_class=5)
    assert bench.scenario == "domain" and len(bench) == 3 and bench.head_sizes == [10]
    angles = bench.info["angles"]
    assert angles == [round(a, 2) for a in task_angles(3, 5)] and all(0 <= a < 180 for a in angles)
    again = make_benchmark("rotated-mnist", dataset="digits", n_tasks=3, seed=5, train_per_class=10, test_per_class=5)
    for a, b in zip(bench.tasks, again.tasks):
        assert torch.equal(a.train.x, b.train.x) and torch.equal(a.test.y, b.test.y)
    plain = make_benchmark("split-mnist", dataset="digits", n_tasks=1, scenario="domain", train_per_class=10,
                           test_per_class=5, seed=5)
    first = bench.tasks[0]
    # the same images as the unrotated data, turned by the task's angle (train and test alike)
    assert torch.allclose(first.train.x, rotate(plain.tasks[0].train.x, task_angles(3, 5)[0]), atol=1e-5)
    assert torch.allclose(first.test.x, rotate(plain.tasks[0].test.x, task_angles(3, 5)[0]), atol=1e-5)
