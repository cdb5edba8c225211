"""ALASSO: asymmetric loss approximation with single-side overestimation.

Park, Hong, Han and Lee, ICCV 2019. ALASSO keeps SI's path integral (the
importance of each parameter measured along the optimisation path) and
changes two things (equation numbers of the paper):

**The surrogate is asymmetric** (Eq. 4-6). After task ``n`` each parameter
``theta_k`` has an anchor ``theta^n_k`` and came there from ``theta^{n-1}_k``.
The side of the anchor the parameter came from was *observed* during training;
the other side was not. With ``alpha(theta) = (theta - theta^n)(theta^{n-1} - theta^n)``
(Eq. 4) the surrogate of the old tasks is

    L_s^n(theta_k) = Omega_k (theta_k - theta^n_k)^2              if alpha > 0 (observed side)
                     (a Omega_k + epsilon) (theta_k - theta^n_k)^2  if alpha <= 0 (unobserved side)   (Eq. 5)

and task ``n + 1`` minimises ``L^{n+1} + c * sum_k L_s^n(theta_k)`` (Eq. 6).

**Omega is the exact quadratic coefficient** (Eq. 7, 10, 11): the surrogate
of tasks ``1..n`` must drop, from ``theta^{n-1}`` to ``theta^n``, by the drop of
the task loss (``omega^n``, SI's path integral, Eq. 10) plus the drop of the
old surrogate (``omega^{1:(n-1)} = -c L_s^{n-1}(theta^n)``, Eq. 11):

    Omega^n_k = (omega^n_k + omega^{1:(n-1)}_k) / (theta^n_k - theta^{n-1}_k)^2.      (Eq. 7)

SI instead adds the new importance to the old one (Eq. 3).

**Parameter decoupling** (Eq. 12): the old surrogate inside Eq. 11 is evaluated
with its own ``a'`` and ``c'``: ``omega^{1:(n-1)} = -c' L_s^{n-1}(theta^n, a')``.

What the text leaves open is settled by the authors' code (``dmpark04/alasso``,
a fork of the SI code), which this module follows; see the ``alasso`` chapter
for the list of differences:

* the denominator of Eq. 7 is damped by SI's ``xi``: ``(Delta^2 + xi)``;
* the new ``Omega`` is bounded below by the previous one,
  ``Omega^n = max(Eq. 7, Omega^{n-1})`` (``keep_max``), so it never shrinks and
  never becomes negative;
* the constants for permuted MNIST: ``c = c' = 1``, ``a = 1.8``, ``a' = 1``,
  ``epsilon = 1e-6``, ``epsilon' = 0``, ``xi = 0.1``;
* the side is remembered by the sign of the last move (the code stores a signed
  Omega); a parameter that did not move has both sides unobserved, as Eq. 5
  says for ``alpha = 0`` (the code treats one side as observed there).

Hyperparameters ``omega="si"`` (SI's cumulative Omega, Eq. 3, accumulated as
the SI code does, ``relu(Omega + new)``: see :mod:`clutils.strategies.si`) and
``a=1, epsilon=0`` (a symmetric surrogate) give the paper's two ablations.

The training step writes the penalty as ``mid * d^2 + half * d |d|`` with
``d = theta - anchor`` (:func:`side_coefficients`), so that no comparison is
needed, and adds its closed-form gradient ``2 c (mid * d + half * |d|)`` to
``.grad`` in ``after_backward`` instead of back-propagating it
(``applies_penalty_gradient``, as the quadratic penalties of EWC, SI and MAS;
:func:`surrogate` is the readable reference version).
"""
from __future__ import annotations

import torch

from .base import Strategy, clone_parameters, parameters_of
from .registry import register
from .si import PathIntegral, accumulate_importance

OMEGA_RULES = ("exact", "si")


def alpha_sign(theta: torch.Tensor, anchor: torch.Tensor, came_from: torch.Tensor) -> torch.Tensor:
    """sign(alpha(theta)) of Eq. 4, with ``came_from = sign(theta^{n-1} - theta^n)``."""
    return torch.sign(theta - anchor) * came_from


def surrogate(theta: torch.Tensor, anchor: torch.Tensor, omega: torch.Tensor, came_from: torch.Tensor,
              a: float, epsilon: float) -> torch.Tensor:
    """The asymmetric surrogate of Eq. 5, elementwise (the readable reference version).

    ``omega`` (>= 0) is charged on the observed side (``alpha > 0``),
    ``a * omega + epsilon`` on the unobserved side (``alpha <= 0``).
    """
    observed = alpha_sign(theta, anchor, came_from) > 0
    coefficient = torch.where(observed, omega, a * omega + epsilon)
    return coefficient * (theta - anchor).pow(2)


def side_coefficients(omega: torch.Tensor, came_from: torch.Tensor, a: float,
                      epsilon: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``(mid, half)`` with ``coefficient(d) = mid + half * sign(d)`` for ``d = theta - anchor``.

    Then ``surrogate = mid * d^2 + half * d * |d|``: no comparison and no
    ``where`` in the training step. Observed side (``sign(d) = came_from``):
    ``mid + half = omega``; unobserved: ``mid - half = a omega + epsilon``; a
    parameter that never moved (``came_from = 0``) is charged ``a omega + epsilon``
    on both sides.
    """
    unobserved = a * omega + epsilon
    gap = (omega - unobserved) / 2
    mid = unobserved + came_from.abs() * gap
    half = came_from * gap
    return mid, half


class _AsymmetricQuadratic(torch.autograd.Function):
    """``sum(mid * d^2 + half * d |d|)`` with ``d = theta - anchor``, in one pass each way.

    With ``q = mid * d + half * |d|`` the value is ``sum(d * q)`` and the gradient
    is ``2 q`` (``d |d|`` is differentiable, its derivative is ``2 |d|``).
    """

    @staticmethod
    def forward(ctx, theta, anchor, mid, half):
        d = theta - anchor
        q = torch.addcmul(mid * d, half, d.abs())
        ctx.save_for_backward(q)
        return torch.dot(d.reshape(-1), q.reshape(-1))

    @staticmethod
    def backward(ctx, grad_output):
        (q,) = ctx.saved_tensors
        return q * (2 * grad_output), None, None, None


@register
class ALASSO(Strategy):
    """ALASSO (see the module docstring for the equations and the authors' constants)."""

    name = "alasso"
    defaults = {
        "c": 1.0,  # strength of the surrogate in the training loss (Eq. 6)
        "a": 1.8,  # overestimation of the unobserved side (Eq. 5; the authors' code)
        "epsilon": 1e-6,  # added on the unobserved side (Eq. 5)
        "xi": 0.1,  # damping of Delta^2 in Eq. 7 (SI's xi; the authors' code)
        "decouple": True,  # Eq. 12: evaluate the old surrogate with c', a', epsilon'
        "c_prime": 1.0,
        "a_prime": 1.0,
        "epsilon_prime": 0.0,
        "omega": "exact",  # "exact": Eq. 7; "si": SI's cumulative Eq. 3 (ablation)
        "keep_max": True,  # Omega^n = max(Eq. 7, Omega^{n-1}) (the authors' code)
    }
    needs_task_gradient = True  # the path integral needs the task loss's own gradient
    # The penalty's closed-form gradient is added to ``.grad`` in ``after_backward``; the loop
    # then does not call ``penalty()`` (False: the loop back-propagates ``penalty()``).
    applies_penalty_gradient = True

    def __init__(self, **hyperparameters):
        super().__init__(**hyperparameters)
        if self.hp["omega"] not in OMEGA_RULES:
            raise ValueError(f"omega must be one of {OMEGA_RULES}, got {self.hp['omega']!r}")

    # -- the constants of Eq. 11/12 -------------------------------------------------------
    @property
    def primed(self) -> tuple[float, float, float]:
        """``(c', a', epsilon')`` of Eq. 12; without decoupling the same as ``(c, a, epsilon)``."""
        hp = self.hp
        if hp["decouple"]:
            return float(hp["c_prime"]), float(hp["a_prime"]), float(hp["epsilon_prime"])
        return float(hp["c"]), float(hp["a"]), float(hp["epsilon"])

    # -- hooks ------------------------------------------------------------------------------
    def setup(self, model, benchmark) -> None:
        super().setup(model, benchmark)
        self.omega: dict[str, torch.Tensor] = {}  # Omega_k >= 0
        self.came_from: dict[str, torch.Tensor] = {}  # sign(theta^{n-1} - theta^n): the observed side
        self.anchor: dict[str, torch.Tensor] = {}  # theta^n
        self._coefficients: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self._buffers: dict[str, torch.Tensor] = {}  # d = theta - theta^{n-1}, reused by every step

    def before_task(self, model, task) -> None:
        self.path = PathIntegral(model)  # omega^n of Eq. 10 along the path (SI's bookkeeping)

    def penalty(self, model, batch):
        """``c * sum_k L_s^{n-1}(theta_k)`` (Eq. 6), differentiable; none while training the first task.

        The training loop does not call it (``applies_penalty_gradient``): the
        gradient is added in :meth:`after_backward`. It is the value for reports
        and tests, and the loop's path when ``applies_penalty_gradient`` is False.
        """
        if not self.omega:
            return None
        params = parameters_of(model)
        total = sum(_AsymmetricQuadratic.apply(params[n], self.anchor[n], *self._coefficients[n])
                    for n in self.omega)
        return self.hp["c"] * total

    def after_task_backward(self, model) -> None:
        self.path.record_gradient()  # the task gradient alone, for omega^n

    @torch.no_grad()
    def after_backward(self, model) -> None:
        """``grad += 2 c (mid * d + half * |d|)``: the gradient of ``c * (mid * d^2 + half * d |d|)``."""
        if not self.applies_penalty_gradient or not self.omega:
            return
        params = parameters_of(model)
        scale = 2.0 * self.hp["c"]
        for n, (mid, half) in self._coefficients.items():
            p = params[n]
            if p.grad is None:  # another task's head: not trained now, still at its anchor
                continue
            d = self._buffers[n]
            torch.sub(p, self.anchor[n], out=d)  # d = theta - theta^{n-1}
            p.grad.addcmul_(mid, d, value=scale)  # grad += 2 c (mid * d + half * |d|)
            p.grad.addcmul_(half, d.abs_(), value=scale)

    def after_step(self, model) -> None:
        self.path.record_step()

    def after_task(self, model, task, data) -> None:
        self.consolidate(model, self.path.contribution())

    # -- Eq. 7: the new Omega ------------------------------------------------------------------
    def new_omega(self, theta: dict[str, torch.Tensor], start: dict[str, torch.Tensor],
                  w: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Omega^n from theta^n (``theta``), theta^{n-1} (``start``) and the path integral ``w`` (omega^n)."""
        hp = self.hp
        c_p, a_p, eps_p = self.primed
        out = {}
        for n, theta_n in theta.items():
            denominator = (theta_n - start[n]).pow(2) + hp["xi"]  # (theta^n - theta^{n-1})^2 + xi
            old = self.omega.get(n)  # Omega^{n-1}; None after the first task
            if hp["omega"] == "si":  # ablation: SI's Eq. 3 with the relu on the running sum (pathint)
                out[n] = accumulate_importance(old, w[n] / denominator, "sum")
                continue
            if old is None:  # no surrogate yet: omega^{1:0} = 0
                estimate = w[n] / denominator
            else:  # Eq. 11/12: omega^{1:(n-1)} = -c' L_s^{n-1}(theta^n, a')
                old_change = -c_p * surrogate(theta_n, start[n], old, self.came_from[n], a_p, eps_p)
                estimate = (w[n] + old_change) / denominator  # Eq. 7
            if hp["keep_max"] and old is not None:
                out[n] = torch.maximum(estimate, old)  # the authors' code: Omega never shrinks
            else:
                out[n] = torch.relu(estimate)  # Eq. 5 requires Omega >= 0
        return out

    def consolidate(self, model, w: dict[str, torch.Tensor]) -> None:
        """After task n: Omega^n (Eq. 7), the observed side, and the new anchor theta^n."""
        theta = clone_parameters(model)
        start = self.anchor or dict(zip(self.path.names, self.path.start))  # theta^{n-1}
        self.omega = self.new_omega(theta, start, w)
        self.came_from = {n: torch.sign(start[n] - theta[n]) for n in theta}  # sign(theta^{n-1} - theta^n)
        self.anchor = theta
        self._refresh()

    def _refresh(self) -> None:
        a, eps = float(self.hp["a"]), float(self.hp["epsilon"])
        self._coefficients = {n: side_coefficients(self.omega[n], self.came_from[n], a, eps) for n in self.omega}
        self._buffers = {n: torch.empty_like(v) for n, v in self.anchor.items()}  # d of every step

    # -- inspection ----------------------------------------------------------------------------
    def surrogate_loss(self, model, a: float | None = None, epsilon: float | None = None) -> torch.Tensor:
        """``sum_k L_s(theta_k)`` at the model's weights (Eq. 5), without ``c``; for tests and plots."""
        a = self.hp["a"] if a is None else a
        epsilon = self.hp["epsilon"] if epsilon is None else epsilon
        params = parameters_of(model)
        return sum(surrogate(params[n].detach(), self.anchor[n], self.omega[n], self.came_from[n], a, epsilon).sum()
                   for n in self.omega)

    # -- checkpointing -------------------------------------------------------------------------
    def state_dict(self):
        state = {}
        for kind in ("omega", "came_from", "anchor"):
            state.update({f"{kind}.{n}": v for n, v in getattr(self, kind).items()})
        return state

    def load_state_dict(self, state) -> None:
        self.omega, self.came_from, self.anchor = {}, {}, {}
        for key, value in state.items():
            kind, name = key.split(".", 1)
            getattr(self, kind)[name] = value
        self._refresh()
