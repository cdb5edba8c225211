"""SPP's own measures in clutils.metrics: the FWT of Eq. 7 (against joint training) and SMT (Eq. 9)."""
import numpy as np
import pytest

from clutils import metrics

R = np.array([[0.9, 0.1, 0.2],
              [0.8, 0.95, 0.3],
              [0.7, 0.9, 0.85]])


def test_forward_transfer_joint_is_eq_7():
    joint = [0.92, 0.97, 0.9]
    # (0.9 - 0.92 + 0.95 - 0.97) / 2
    assert metrics.forward_transfer_joint(R, joint) == pytest.approx(-0.02)
    assert metrics.forward_transfer_joint(R[:1, :1], joint) == 0.0
    with pytest.raises(ValueError):
        metrics.forward_transfer_joint(R, [0.9])


def test_forward_transfer_joint_differs_from_gem():
    assert metrics.forward_transfer_joint(R, [0.5, 0.5, 0.5]) != metrics.forward_transfer(R, [0.5, 0.5, 0.5])


def test_smt_is_the_mean_variance_of_each_task_after_it_is_learnt():
    # task 1: var(0.9, 0.8, 0.7); task 2: var(0.95, 0.9)
    want = (np.var([0.9, 0.8, 0.7]) + np.var([0.95, 0.9])) / 2
    assert metrics.stability_smt(R) == pytest.approx(want)
    assert metrics.stability_smt(np.ones((3, 3))) == 0.0
