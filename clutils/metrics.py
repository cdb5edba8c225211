"""Continual-learning metrics computed from the accuracy matrix.

``R[i, j]`` is the test accuracy on task ``j`` after training task ``i``
(``T`` tasks, indices from 0). All functions take ``R`` as a ``T x T`` array.
"""
from __future__ import annotations

import numpy as np


def _square(R) -> np.ndarray:
    R = np.asarray(R, dtype=float)
    if R.ndim != 2 or R.shape[0] > R.shape[1]:
        raise ValueError(f"expected a T x T accuracy matrix, got shape {R.shape}")
    return R[:, : R.shape[0]]


def average_accuracy(R) -> float:
    """ACC = (1/T) sum_j R[T-1, j]: mean accuracy over all tasks after the last one (GEM)."""
    R = _square(R)
    return float(R[-1].mean())


def average_accuracy_curve(R) -> np.ndarray:
    """Mean accuracy over the tasks seen so far, after each task: (1/(i+1)) sum_{j<=i} R[i, j]."""
    R = _square(R)
    return np.array([R[i, : i + 1].mean() for i in range(len(R))])


def backward_transfer(R) -> float:
    """BWT = 1/(T-1) sum_{j<T-1} (R[T-1, j] - R[j, j]) (Lopez-Paz and Ranzato, 2017).

    Negative values are forgetting. Zero for a single task.
    """
    R = _square(R)
    T = len(R)
    if T < 2:
        return 0.0
    return float(np.mean([R[-1, j] - R[j, j] for j in range(T - 1)]))


def forward_transfer(R, initial) -> float:
    """FWT = 1/(T-1) sum_{j>=1} (R[j-1, j] - b_j), ``b_j`` the untrained model's accuracy on task j.

    (Lopez-Paz and Ranzato, 2017.) Needs the accuracy on tasks not trained yet.
    """
    R = _square(R)
    b = np.asarray(initial, dtype=float)
    T = len(R)
    if T < 2:
        return 0.0
    if len(b) < T:
        raise ValueError(f"need {T} initial accuracies, got {len(b)}")
    return float(np.mean([R[j - 1, j] - b[j] for j in range(1, T)]))


def forgetting_per_task(R, k: int | None = None) -> np.ndarray:
    """f_j^k = max_{l<k} R[l, j] - R[k, j] for every task j < k (Chaudhry et al., 2018).

    ``k`` defaults to the last task.
    """
    R = _square(R)
    k = len(R) - 1 if k is None else k
    return np.array([R[:k, j].max() - R[k, j] for j in range(k)])


def forgetting(R, k: int | None = None) -> float:
    """F_k = 1/k sum_{j<k} f_j^k, the average forgetting after task k (Chaudhry et al., 2018)."""
    f = forgetting_per_task(R, k)
    return float(f.mean()) if len(f) else 0.0


def _reference(R: np.ndarray, reference) -> np.ndarray:
    ref = np.asarray(reference, dtype=float)
    if len(ref) < len(R):
        raise ValueError(f"need {len(R)} reference accuracies, got {len(ref)}")
    return ref


def intransigence(R, reference, k: int | None = None) -> float:
    """I_k = a*_k - R[k, k] for the k-th task (Chaudhry et al., 2018, Eq. 5; ALASSO's Table 2 reports I_30).

    ``a*_k`` (``reference[k]``) is the accuracy on task k of a reference model trained on
    the data of tasks 1..k together; ``k`` defaults to the last task. Positive values mean
    the method learns task k worse than that reference. :func:`mean_intransigence` averages
    over the tasks.
    """
    R = _square(R)
    ref = _reference(R, reference)
    k = len(R) - 1 if k is None else k
    if not 0 <= k < len(R):
        raise ValueError(f"task index k={k} outside 0..{len(R) - 1}")
    return float(ref[k] - R[k, k])


def mean_intransigence(R, reference) -> float:
    """1/T sum_k I_k: :func:`intransigence` averaged over the T tasks (not the paper's quantity)."""
    R = _square(R)
    ref = _reference(R, reference)
    return float(np.mean([ref[k] - R[k, k] for k in range(len(R))]))


#: Why FWT is not reported for a class-incremental run.
FWT_NOT_APPLICABLE = ("not applicable to class-incremental learning: a task's classes are never trained before "
                      "the task, so R[j-1, j] is 0 by construction and FWT only measures the untrained model")


def forward_transfer_applies(scenario: str | None) -> bool:
    """FWT is meaningful unless the scenario is class-incremental (see :data:`FWT_NOT_APPLICABLE`)."""
    return scenario != "class"


def forgetting_ratio(R, joint, random) -> np.ndarray:
    """HAT's forgetting ratio after each task t (Serra et al., 2018; Dinu, section 4):

    rho^{tau<=t} = (A^{tau<=t} - A_R^tau) / (A_J^{tau<=t} - A_R^tau) - 1 and
    rho^{<=t} = (1/t) sum_{tau<=t} rho^{tau<=t}.

    ``joint`` is the accuracy matrix of joint (multi-task) training on the first t
    tasks, ``random`` the accuracy of a random stratified classifier per task.
    Returns the vector (rho^{<=1}, ..., rho^{<=T}); 0 is as good as joint training,
    -1 as bad as chance.
    """
    R = _square(R)
    J = _square(joint)
    A_R = np.asarray(random, dtype=float)
    out = []
    for t in range(len(R)):
        ratios = (R[t, : t + 1] - A_R[: t + 1]) / (J[t, : t + 1] - A_R[: t + 1]) - 1
        out.append(ratios.mean())
    return np.array(out)


def random_stratified_accuracy(class_counts) -> float:
    """Expected accuracy of guessing classes in proportion to their frequency: sum_c p_c^2."""
    p = np.asarray(class_counts, dtype=float)
    p = p / p.sum()
    return float((p ** 2).sum())


def confusion_matrix(true, predicted, n_classes: int) -> np.ndarray:
    """C[a, b] = number of samples of class a predicted as b."""
    true = np.asarray(true, dtype=np.int64)
    predicted = np.asarray(predicted, dtype=np.int64)
    return np.bincount(true * n_classes + predicted, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


# ----------------------------------------------------------------------------- SPP (Peng et al.)


def forward_transfer_joint(R, joint) -> float:
    """SPP's FWT, Eq. 7 of Peng et al.: 1/(T-1) sum_{i=1}^{T-1} (P_{i,i} - m_i).

    ``P_{i,i} = R[i-1, i-1]`` is the accuracy on task i right after learning it and ``m_i``
    (``joint[i-1]``) the accuracy on task i of a multi-task *joint* model, the paper's measure
    of how hard task i is. Unlike GEM's FWT (:func:`forward_transfer`, against an untrained
    model on a task not learnt yet) it compares a task just learnt with joint training: negative
    values mean the method learns new tasks worse than joint training does. The sum runs over
    the first T-1 tasks, as Eq. 7 is written.
    """
    R = _square(R)
    T = len(R)
    if T < 2:
        return 0.0
    m = _reference(R, joint)
    return float(np.mean([R[i, i] - m[i] for i in range(T - 1)]))


def stability_smt(R) -> float:
    """SPP's SMT, Eq. 9 of Peng et al.: 1/(T-1) sum_{j=1}^{T-1} D_j.

    The paper calls ``D_j`` "the variance of one task for sequential learning, which reflects the
    performance fluctuations of a task"; here ``D_j`` is the (population) variance of task j's
    accuracy over the rows from the one that learnt it to the last, ``var(R[j-1:, j-1])``, for
    the first T-1 tasks (the last task has a single row). Lower is more stable.
    """
    R = _square(R)
    T = len(R)
    if T < 2:
        return 0.0
    return float(np.mean([R[j:, j].var() for j in range(T - 1)]))
