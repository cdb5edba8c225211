"""AR1 (Maltoni & Lomonaco 2019, section 3.3): CWR+ for the head, SI for the shared weights.

CWR and CWR+ learn the shared weights on the first batch only. AR1 keeps
learning them on every batch, held back by SI with the class-incremental
normalisation of Eq. 10-11, while the output layer is handled by CWR+.

Algorithm 3::

    cw = 0; Theta = 0; F_hat = 0
    for each training batch B_i:
        tw = 0
        train with SGD on B_i, simultaneously:
            learn tw with no regularisation
            learn the shared weights subject to SI regularisation with F_hat and Theta
        for each class j of B_i: cw[j] = tw[j] - avg(tw)
        Theta = the shared weights
        update F_hat from the trajectories of B_i (Eq. 10, 11)
        test with the shared weights and cw

The SI regularisation is a weight decay toward ``Theta`` (Eq. 7): each step adds
``lambda * F_hat * (theta - Theta)`` to the gradient of a shared weight. The
importance ``F^i = sum(-g * delta) / (T^2 + xi)`` is accumulated as
``F = F + w_i F^i`` (``w_first`` for B_1, ``w_rest`` after) and clipped to
``[0, max_F]``. Only the shared weights carry ``F`` and ``Theta``
(``2 * (m - s * pn)`` values). Defaults: Table 4 (CORe50, CaffeNet and GoogLeNet).
"""
from __future__ import annotations

from .cwr import attach_consolidated_head, normalisation_parameters, shared_parameters
from .registry import register
from .sit import SISIT


@register
class AR1(SISIT):
    """AR1: CWR+ head (zero init, mean-shift) plus SI-regularised shared weights (Algorithm 3).

    ``zero_init`` / ``mean_shift`` (both on in AR1), ``init_std`` and ``mask_unseen`` act on the head
    as in :class:`~clutils.strategies.cwr.CWR`; ``lam``, ``max_f``, ``xi``, ``w_first``
    and ``w_rest`` are the SI settings of Eq. 10-11 for the shared weights, ``path_gradient``
    the gradient the path integral reads (see :class:`~clutils.strategies.sit.SISIT`).

    ``protect_norm``: the paper protects "the shared weights" without singling out batch
    normalisation; the authors' ar1-pytorch code leaves its gamma and beta out of ``F`` and
    ``Theta``, and so does the default (False): they keep training at the shared layers'
    rate, unregularised. The running statistics of batch normalisation are not weights and
    follow every batch in both (a drift no penalty holds back; the GoogLeNet of the paper
    profile has them, the MLP of the quick profile has none).
    """

    name = "ar1"
    scenarios = ("class",)
    protects_head = False  # F and Theta cover the shared weights only
    defaults = {"lam": 8e5, "max_f": 1e-3, "xi": 1e-7, "w_first": 0.0015, "w_rest": 0.0015,
                "zero_init": True, "mean_shift": True, "init_std": None, "mask_unseen": True,
                "path_gradient": "total", "protect_norm": False}

    def setup(self, model, benchmark) -> None:
        super().setup(model, benchmark)
        attach_consolidated_head(self, model, benchmark)

    def protected(self, model):
        """The shared weights, without the normalisation layers' gamma and beta unless ``protect_norm``."""
        norm = set() if self.hp["protect_norm"] else normalisation_parameters(model)
        return {n: p for n, p in shared_parameters(model).items() if p.requires_grad and n not in norm}

    def before_task(self, model, task) -> None:
        super().before_task(model, task)
        self.head.reset_temporary(self.hp["zero_init"], self.hp["init_std"])

    def after_task(self, model, task, data) -> None:
        super().after_task(model, task, data)  # F_hat and Theta of the shared weights
        self.head.consolidate(task.classes, self.hp["mean_shift"], 1.0)

    def state_dict(self):
        state = super().state_dict()
        state.update({f"head.{k}": v for k, v in self.head.state_dict().items()})
        return state

    def load_state_dict(self, state) -> None:
        head = {k.split(".", 1)[1]: v for k, v in state.items() if k.startswith("head.")}
        super().load_state_dict({k: v for k, v in state.items() if not k.startswith("head.")})
        self.head.load_state_dict(head)
        self.head.load()
