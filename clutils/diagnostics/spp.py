"""Figure 7 of the SPP paper (Peng et al.): how an importance distribution and the weights move
between the first and the last task, layer by layer.

**The F value (Figure 7b).** The paper measures "the similarity of parameter importance
distribution between the first tasks and the last tasks" with the Fréchet distance (its
reference [7]) and calls the score the F value, larger meaning more similar; it gives no formula.
This module fixes one:

* the **Fréchet distance between two distributions on the real line** is the 2-Wasserstein
  distance, the L2 distance between their quantile functions,

      d(P, Q) = ( integral_0^1 (F_P^{-1}(u) - F_Q^{-1}(u))^2 du )^{1/2},

  which for two Gaussians is the closed form ``sqrt((mu_P - mu_Q)^2 + (sigma_P - sigma_Q)^2)``
  (the formula behind FID, in one dimension). :func:`frechet_distance_1d` computes it between
  two samples on a common grid of ``n`` quantiles (exactly the sorted-sample formula for two
  samples of the same size);
* the two importances of one layer (after the first task, ``a``; after the last, ``b``) are put
  on one scale, the 99th percentile ``s`` of ``a``, and clipped to [0, 1]; then

      F = 1 - d(clip(a / s, 0, 1), clip(b / s, 0, 1))      in [0, 1]

  (:func:`f_value`): 1 for the same distribution, 0 when all the mass moved from one end of the
  scale to the other. A shared scale keeps a uniform shrinking of the importance visible; a
  scale of its own per task would compare shapes only.

**The weighted change (Figure 7c).** "The weighted sum of squares of the difference between the
first and the last task" per layer: with ``Omega`` the importance after the first task,

    C = sum_k Omega_k (w_k^T - w_k^1)^2 / sum_k Omega_k

(:func:`weighted_change`), the importance-weighted mean squared change; weights ``1 - Omega /
max Omega`` give its complement, the change where the weights were *unimportant*.
"""
from __future__ import annotations

import numpy as np
import torch


def _flat(values) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    v = np.asarray(values, dtype=float).ravel()
    if v.size == 0:
        raise ValueError("an empty sample has no distribution")
    if not np.all(np.isfinite(v)):
        raise ValueError("the sample holds NaN or infinite values")
    return v


def frechet_distance_1d(a, b, n: int | None = None) -> float:
    """The Fréchet (2-Wasserstein) distance between the empirical distributions of ``a`` and ``b``.

    ``sqrt(mean_u (Q_a(u) - Q_b(u))^2)`` over ``n`` quantile levels ``u = (i + 1/2) / n``
    (``n``: the larger sample size when not given). For two samples of the same size it is
    ``sqrt(mean((sort(a) - sort(b))^2))`` exactly.
    """
    a, b = _flat(a), _flat(b)
    if n is None and len(a) == len(b):
        return float(np.sqrt(np.mean((np.sort(a) - np.sort(b)) ** 2)))
    n = n or max(len(a), len(b))
    if n < 1:
        raise ValueError(f"n must be positive, got {n}")
    u = (np.arange(n) + 0.5) / n
    qa = np.quantile(a, u, method="inverted_cdf")
    qb = np.quantile(b, u, method="inverted_cdf")
    return float(np.sqrt(np.mean((qa - qb) ** 2)))


def gaussian_frechet_1d(mu1: float, sigma1: float, mu2: float, sigma2: float) -> float:
    """The closed form between N(mu1, sigma1^2) and N(mu2, sigma2^2): ``sqrt((mu1-mu2)^2 + (sigma1-sigma2)^2)``."""
    if sigma1 < 0 or sigma2 < 0:
        raise ValueError("standard deviations must be non-negative")
    return float(np.hypot(mu1 - mu2, sigma1 - sigma2))


def f_value(first, last, quantile: float = 0.99) -> float:
    """Figure 7b's similarity of two importance distributions: ``1 - d`` on the first one's scale (module docstring)."""
    a, b = _flat(first), _flat(last)
    if not 0 < quantile <= 1:
        raise ValueError(f"quantile must lie in (0, 1], got {quantile}")
    s = np.quantile(a, quantile)
    if s <= 0:
        s = a.max()
    if s <= 0:
        raise ValueError("the first importance is zero everywhere: no scale to compare on")
    return 1.0 - frechet_distance_1d(np.clip(a / s, 0, 1), np.clip(b / s, 0, 1))


def weighted_change(weight, before, after) -> float:
    """Figure 7c: ``sum_k weight_k (after_k - before_k)^2 / sum_k weight_k``."""
    w, x0, x1 = _flat(weight), _flat(before), _flat(after)
    if not (len(w) == len(x0) == len(x1)):
        raise ValueError(f"weight, before and after must have the same size, got {len(w)}, {len(x0)}, {len(x1)}")
    if np.any(w < 0) or w.sum() <= 0:
        raise ValueError("the weights must be non-negative with a positive sum")
    return float(np.sum(w * (x1 - x0) ** 2) / w.sum())


def unimportance(importance) -> np.ndarray:
    """``1 - Omega / max Omega``: a weighting that is 1 on the least important weights and 0 on the most."""
    v = _flat(importance)
    top = v.max()
    return np.ones_like(v) if top <= 0 else 1.0 - v / top
