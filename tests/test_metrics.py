"""The metrics against small matrices whose expected values are worked out by hand below."""
from __future__ import annotations

import numpy as np
import pytest

from clutils import metrics
from clutils.result import Result

# R[i, j]: accuracy on task j after training task i. Task 0 *improves* after task 1
# (0.5 -> 0.7) then drops to 0.6, so BWT (vs. R[j, j]) and forgetting (vs. the best) differ.
R = [
    [0.50, 0.10, 0.20],
    [0.70, 0.80, 0.30],
    [0.60, 0.40, 0.90],
]
INITIAL = [0.10, 0.05, 0.10]  # the untrained model's accuracy b_j


def test_average_accuracy():
    # (0.6 + 0.4 + 0.9) / 3
    assert metrics.average_accuracy(R) == pytest.approx(1.9 / 3)


def test_average_accuracy_curve():
    # after task 0: 0.5; after task 1: (0.7 + 0.8) / 2; after task 2: (0.6 + 0.4 + 0.9) / 3
    assert metrics.average_accuracy_curve(R) == pytest.approx([0.5, 0.75, 1.9 / 3])


def test_backward_transfer():
    # ((0.6 - 0.5) + (0.4 - 0.8)) / 2 = (0.1 - 0.4) / 2
    assert metrics.backward_transfer(R) == pytest.approx(-0.15)
    assert metrics.backward_transfer([[0.9]]) == 0.0


def test_forward_transfer():
    # ((R[0,1] - b_1) + (R[1,2] - b_2)) / 2 = ((0.1 - 0.05) + (0.3 - 0.1)) / 2
    assert metrics.forward_transfer(R, INITIAL) == pytest.approx(0.125)
    assert metrics.forward_transfer([[0.9]], [0.1]) == 0.0
    with pytest.raises(ValueError):
        metrics.forward_transfer(R, [0.1, 0.1])


def test_forgetting():
    # after the last task: f_0 = max(0.5, 0.7) - 0.6 = 0.1, f_1 = max(0.1, 0.8) - 0.4 = 0.4
    assert metrics.forgetting_per_task(R) == pytest.approx([0.1, 0.4])
    assert metrics.forgetting(R) == pytest.approx(0.25)
    # after task 1: f_0 = 0.5 - 0.7 (the accuracy went up: negative forgetting)
    assert metrics.forgetting(R, k=1) == pytest.approx(-0.2)
    assert metrics.forgetting(R, k=0) == 0.0


def test_intransigence_is_chaudhrys_i_k_and_the_mean_has_its_own_name():
    reference = [0.6, 0.85, 0.95]
    # I_k = a*_k - R[k, k]: the last task by default (ALASSO's I_30 after 30 tasks)
    assert metrics.intransigence(R, reference) == pytest.approx(0.95 - 0.9)
    assert metrics.intransigence(R, reference, k=0) == pytest.approx(0.6 - 0.5)
    assert metrics.intransigence(R, reference, k=1) == pytest.approx(0.85 - 0.8)
    # the mean over tasks: (0.1 + 0.05 + 0.05) / 3
    assert metrics.mean_intransigence(R, reference) == pytest.approx(0.2 / 3)
    with pytest.raises(ValueError):
        metrics.intransigence(R, [0.6])
    with pytest.raises(ValueError):
        metrics.intransigence(R, reference, k=3)


def test_fwt_is_not_reported_for_class_incremental_runs():
    task = Result(config={}, benchmark={"scenario": "task"}, strategy={}, accuracy_matrix=R, initial_accuracy=INITIAL)
    cls = Result(config={}, benchmark={"scenario": "class"}, strategy={}, accuracy_matrix=R, initial_accuracy=INITIAL)
    assert "fwt" in task.metrics()
    assert "fwt" not in cls.metrics() and set(cls.metrics()) == {"acc", "bwt", "forgetting"}


def test_forgetting_ratio():
    joint = [
        [0.60, 0.00, 0.00],
        [0.70, 0.90, 0.00],
        [0.65, 0.85, 0.95],
    ]
    chance = [0.5, 0.5, 0.2]
    # t=0: (0.5-0.5)/(0.6-0.5) - 1 = -1
    # t=1: task 0: (0.7-0.5)/(0.7-0.5) - 1 = 0; task 1: (0.8-0.5)/(0.9-0.5) - 1 = -1/4  -> mean -1/8
    # t=2: task 0: (0.6-0.5)/(0.65-0.5) - 1 = -1/3; task 1: (0.4-0.5)/(0.85-0.5) - 1 = -9/7;
    #      task 2: (0.9-0.2)/(0.95-0.2) - 1 = -1/15  -> mean (-35 - 135 - 7) / 105 / 3 = -59/105
    expected = [-1.0, -1 / 8, -59 / 105]
    assert metrics.forgetting_ratio(R, joint, chance) == pytest.approx(expected)


def test_random_stratified_accuracy():
    assert metrics.random_stratified_accuracy([1, 3]) == pytest.approx(0.25 ** 2 + 0.75 ** 2)  # 0.625
    assert metrics.random_stratified_accuracy([5, 5]) == pytest.approx(0.5)
    assert metrics.random_stratified_accuracy([2, 2, 2, 2]) == pytest.approx(0.25)
    assert metrics.random_stratified_accuracy([7]) == pytest.approx(1.0)


def test_confusion_matrix():
    true = [0, 0, 1, 2, 2, 2]
    pred = [0, 1, 1, 2, 0, 2]
    expected = [
        [1, 1, 0],
        [0, 1, 0],
        [1, 0, 2],
    ]
    C = metrics.confusion_matrix(true, pred, 3)
    assert C.tolist() == expected
    assert C.sum() == len(true)
    # a class that never occurs keeps an all-zero row
    assert metrics.confusion_matrix([0, 0], [0, 1], 3).tolist() == [[1, 1, 0], [0, 0, 0], [0, 0, 0]]


def test_rectangular_matrix_uses_the_first_columns_and_rejects_too_many_rows():
    wide = [row + [0.33] for row in R]  # a fourth, never-trained task
    assert metrics.average_accuracy(wide) == pytest.approx(1.9 / 3)
    assert metrics.backward_transfer(wide) == pytest.approx(-0.15)
    with pytest.raises(ValueError):
        metrics.average_accuracy(np.ones((3, 2)))


def test_result_metrics_from_the_matrix():
    result = Result(config={}, benchmark={}, strategy={}, accuracy_matrix=R, initial_accuracy=INITIAL)
    m = result.metrics()
    assert m["acc"] == pytest.approx(1.9 / 3)
    assert m["bwt"] == pytest.approx(-0.15)
    assert m["fwt"] == pytest.approx(0.125)
    assert m["forgetting"] == pytest.approx(0.25)
    # after the first two tasks only
    partial = Result(config={}, benchmark={}, strategy={}, accuracy_matrix=[r[:] for r in R[:2]],
                     initial_accuracy=INITIAL)
    m2 = partial.metrics()
    assert m2["acc"] == pytest.approx(0.75)  # (0.7 + 0.8) / 2
    assert m2["bwt"] == pytest.approx(0.2)  # 0.7 - 0.5
    assert m2["fwt"] == pytest.approx(0.05)  # 0.1 - 0.05
    assert Result(config={}, benchmark={}, strategy={}).metrics() == {}
