"""The loss-asymmetry probe: is a quadratic fitted on the observed side too flat on the other side?

ALASSO (Park et al., ICCV 2019) rests on an observation (their Figure 2): move
one trained parameter ``theta_k`` away from its value ``theta*_k`` and the loss
rises more steeply on one side than on the other. During training the
parameter came to ``theta*_k`` from ``theta0_k`` (its value before the task):
that side of ``theta*_k`` was *observed* along the optimisation path, the
other side was not. A symmetric quadratic ``h (theta - theta*)^2`` fitted on
the observed side (as SI's and ALASSO's surrogates are) *underestimates* the
loss on the unobserved side when that side is the steeper one.

Some probed parameters barely touch the loss (the weights into a unit that is
never active, for example): their loss change is float noise, about 1e-17,
and its "curvatures" say nothing. A parameter whose fitted loss change over the
distance it travelled, ``max(|h_obs|, |h_un|) * (theta* - theta0)^2``, is below
:data:`FLAT_FLOOR` (1e-10) is **flat**: :func:`summarise` leaves it out of
every share and median and reports how many were left out.

:func:`probe_asymmetry` measures this for any trained model: for each sampled
scalar parameter it evaluates the exact loss change ``L(theta* + delta e_k) -
L(theta*)`` at offsets on both sides, fits ``h_obs`` on the observed side and
``h_un`` on the unobserved side (least squares through the origin, ``delta^2``
as regressor) and reports how often and by how much ``h_obs`` underestimates
the unobserved side. Offsets are fractions of the distance the parameter
travelled (``|theta* - theta0|``), so the observed offsets lie exactly on the
part of the path that was observed.

Evaluating one offset means one forward pass. For a :class:`~clutils.models.ContinualModel`
whose body is an ``MLP`` or a ``CifarNet`` the probe caches the
input of the layer that owns the parameter and re-runs only the layers after
it, all offsets in one batch; an ``nn.Linear`` layer's own output changes in
one column (weight ``W[i, j]``: ``delta * x[:, j]``), so even first-layer
parameters cost a small fraction of a forward pass. Any other model falls back
to one full forward pass per offset.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

DEFAULT_FRACTIONS = (0.25, 0.5, 0.75, 1.0)
#: Below this fitted loss change over the distance travelled (``max(|h_obs|, |h_un|) * moved^2``)
#: a parameter's profile is float noise, not a valley or a slope (a float64 loss of order 1 carries
#: errors of about 1e-16; 1e-10 leaves a wide margin and is far below any loss change that matters).
FLAT_FLOOR = 1e-10


@dataclass
class AsymmetryReport:
    """What :func:`probe_asymmetry` measured.

    ``table`` has one row per probed scalar parameter: ``name`` (the parameter
    tensor), ``index`` (flat index), ``theta`` (trained value), ``moved``
    (``theta* - theta0``), ``h_obs``/``h_un`` (fitted curvatures of the observed
    and unobserved side), ``predicted``/``actual`` (quadratic prediction from the
    observed side and the true loss change at the farthest unobserved offset),
    ``underestimated`` (``actual > predicted``), ``ratio`` (``h_un / h_obs``),
    ``loss_scale`` (``max(|h_obs|, |h_un|) * moved^2``) and ``flat``
    (``loss_scale`` below the report's floor, :data:`FLAT_FLOOR` by default).
    ``offsets`` (P x 2K, parameter units, the observed side negative whichever
    way the parameter moved) and ``loss_change`` (P x 2K) hold the raw profiles.
    """

    table: pd.DataFrame
    offsets: np.ndarray  # P x K offsets in parameter units, signed: observed side < 0
    loss_change: np.ndarray  # P x K loss changes at those offsets
    fractions: tuple[float, ...]
    n_samples: int
    settings: dict = field(default_factory=dict)

    @property
    def floor(self) -> float:
        return float(self.settings.get("floor", FLAT_FLOOR))

    @property
    def kept(self) -> pd.DataFrame:
        """The probed parameters that are not flat (see :data:`FLAT_FLOOR`)."""
        return self.table[~_is_flat(self.table, self.floor)]

    @property
    def valleys(self) -> pd.DataFrame:
        """The kept parameters whose loss rises on both sides (both curvatures > 0)."""
        kept = self.kept
        return kept[(kept.h_obs > 0) & (kept.h_un > 0)]

    def summary(self) -> dict[str, float]:
        """The headline numbers (see :func:`summarise`)."""
        return summarise(self.table, self.floor)

    def by_tensor(self) -> pd.DataFrame:
        """:func:`summarise` per parameter tensor (layer weights and biases)."""
        rows = {name: summarise(part, self.floor) for name, part in self.table.groupby("name", sort=False)}
        return pd.DataFrame(rows).T


def _is_flat(table: pd.DataFrame, floor: float) -> pd.Series:
    """``max(|h_obs|, |h_un|) * moved^2 < floor``: the profile is float noise."""
    scale = np.maximum(table.h_obs.abs(), table.h_un.abs()) * table.moved ** 2
    return scale < floor


def summarise(table: pd.DataFrame, floor: float = FLAT_FLOOR) -> dict[str, float]:
    """Fractions and medians over the probed parameters that are not flat.

    * ``parameters``: how many were probed; ``flat``: how many of them were left
      out because their loss change is below ``floor`` (see :data:`FLAT_FLOOR`);
      every other entry is computed over the rest;
    * ``underestimated``: share of parameters whose true loss change at the
      farthest unobserved offset exceeds the observed-side quadratic's prediction;
    * ``median_factor``: median of ``actual / predicted`` over the underestimated
      parameters with ``predicted > 0`` (how many times the truth exceeds the fit);
    * ``unobserved_steeper``: share with ``h_un > h_obs``;
    * ``median_ratio``: median ``h_un / h_obs`` (parameters with ``h_obs > 0``);
    * ``median_asymmetry``: median of steeper/shallower curvature (both > 0),
      the asymmetry of Figure 2 whichever side was observed;
    * ``valleys``: share of parameters whose loss rises on both sides (both
      curvatures > 0), the only ones with a minimum at the trained value;
    * ``descending``: share whose loss keeps falling past the trained value (``h_un <= 0``).
    """
    probed = len(table)
    flat = _is_flat(table, floor) if probed else pd.Series(dtype=bool)
    table = table[~flat]
    n = len(table)
    if n == 0:
        return {"parameters": float(probed), "flat": float(flat.sum())}
    pos = table[table.h_obs > 0]
    under = table[table.underestimated & (table.predicted > 0)]
    both = table[(table.h_obs > 0) & (table.h_un > 0)]
    asym = np.maximum(both.h_obs, both.h_un) / np.minimum(both.h_obs, both.h_un)
    return {
        "parameters": float(probed),
        "flat": float(flat.sum()),
        "underestimated": float(table.underestimated.mean()),
        "median_factor": float((under.actual / under.predicted).median()) if len(under) else float("nan"),
        "unobserved_steeper": float((table.h_un > table.h_obs).mean()),
        "median_ratio": float((pos.h_un / pos.h_obs).median()) if len(pos) else float("nan"),
        "median_asymmetry": float(asym.median()) if len(both) else float("nan"),
        "valleys": float(len(both) / n),
        "descending": float((table.h_un <= 0).mean()),
    }


def fit_curvature(offsets: np.ndarray, change: np.ndarray) -> np.ndarray:
    """Least-squares ``h`` of ``change ~ h * offset^2`` per row (a quadratic centred at the optimum)."""
    d2 = offsets ** 2
    return (change * d2).sum(-1) / np.maximum((d2 * d2).sum(-1), np.finfo(float).tiny)


# ----------------------------------------------------------------------------- parameter choice

def select_parameters(model: nn.Module, start: dict[str, torch.Tensor], per_tensor: int = 64,
                      seed: int = 0, min_move: float = 0.0,
                      names: Sequence[str] | None = None) -> list[tuple[str, int]]:
    """``(name, flat index)`` of up to ``per_tensor`` parameters per tensor, drawn at random.

    Only parameters that moved more than ``min_move`` (``|theta* - theta0|``) are
    candidates: one that never moved has no observed side. Drawing the same number
    from every tensor keeps small layers (biases, the output layer) represented.
    """
    generator = torch.Generator().manual_seed(seed)
    chosen = []
    for name, p in model.named_parameters():
        if not p.requires_grad or name not in start or (names is not None and name not in names):
            continue
        moved = (p.detach() - start[name].to(p.device)).abs().flatten().cpu()
        candidates = torch.nonzero(moved > min_move).flatten()
        if len(candidates) == 0:
            continue
        pick = candidates[torch.randperm(len(candidates), generator=generator)[:per_tensor]]
        chosen += [(name, int(i)) for i in sorted(pick.tolist())]
    return chosen


# ----------------------------------------------------------------------------- loss evaluation

class _LossEvaluator:
    """Losses of ``model`` on ``(x, y)`` with one scalar parameter moved by several offsets."""

    def __init__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, task, loss_fn: Callable):
        self.model, self.x, self.y, self.task, self.loss_fn = model, x, y, task, loss_fn
        self.stages = self._stages(model)
        self.owner = {}  # parameter name -> (stage index, module, local parameter name)
        self.cache: dict[int, torch.Tensor] = {}  # stage index -> its input (the last: the logits)
        if self.stages is not None:
            prefix = {id(m): i for i, m in enumerate(self.stages)}
            for mod_name, module in model.named_modules():
                if id(module) in prefix:
                    for local, _ in module.named_parameters(recurse=True):
                        full = f"{mod_name}.{local}" if mod_name else local
                        self.owner[full] = (prefix[id(module)], module, local)
        with torch.no_grad():
            self.base = float(self._loss(_forward(model, x, task)))

    @staticmethod
    def _stages(model: nn.Module) -> list[nn.Module] | None:
        """The model as a chain of modules (the last one takes the task id), or None."""
        from ..models import MLP, CifarNet, ContinualModel

        if not isinstance(model, ContinualModel):
            return None
        if type(model.body) is MLP:
            return list(model.body.layers) + [model.head]
        if type(model.body) is CifarNet:
            return list(model.body.layers) + list(model.body.fc) + [model.head]
        return None

    def _loss(self, logits: torch.Tensor) -> torch.Tensor:
        return self.loss_fn(logits, self.y)

    def _run_from(self, stage: int, h: torch.Tensor) -> torch.Tensor:
        for module in self.stages[stage:-1]:
            h = module(h)
        return self.stages[-1](h, self.task)

    def _activations(self) -> list[torch.Tensor]:
        """The input of every stage and the final logits at the trained weights (computed once)."""
        if not self.cache:
            acts = [self.x]
            for k, module in enumerate(self.stages):
                h = acts[-1]
                acts.append(module(h, self.task) if k == len(self.stages) - 1 else module(h))
            self.cache = {k: a for k, a in enumerate(acts)}
        return [self.cache[k] for k in range(len(self.cache))]

    def _stage_io(self, stage: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Input and output of ``stage`` at the trained weights."""
        acts = self._activations()
        return acts[stage], acts[stage + 1]

    @torch.no_grad()
    def changes(self, name: str, index: int, offsets) -> np.ndarray:
        """``L(theta* + offset e_k) - L(theta*)`` for every offset."""
        offsets_t = torch.tensor(np.asarray(offsets, dtype=float), dtype=self.x.dtype, device=self.x.device)
        if name in self.owner:
            stage, module, local = self.owner[name]
            if isinstance(module, nn.Linear) and local in ("weight", "bias"):
                return self._linear_changes(stage, module, local, index, offsets_t)
            return self._stage_changes(stage, name, index, offsets_t)
        return self._full_changes(name, index, offsets_t)

    def _linear_changes(self, stage, module, local, index, offsets_t) -> np.ndarray:
        """One weight or bias of an ``nn.Linear`` moved: only output column ``i`` changes.

        The changed column goes through the element-wise layers that follow
        (ReLU, dropout in eval mode) on its own, and into the next ``nn.Linear`` as
        a rank-one update (``column change x W[:, i]``): no matrix product until
        the layer after that.
        """
        acts = self._activations()
        h, out = acts[stage], acts[stage + 1]
        if local == "weight":
            i, j = divmod(index, module.in_features)
            column = h.reshape(len(h), -1)[:, j]
        else:
            i, column = index, torch.ones(len(h), dtype=h.dtype, device=h.device)
        new = out[:, i].unsqueeze(0) + offsets_t[:, None] * column[None, :]  # K x N
        base = out[:, i]
        k = stage + 1
        while k < len(self.stages) - 1 and isinstance(self.stages[k], _ELEMENTWISE):
            new, base = self.stages[k](new), acts[k + 1][:, i]
            k += 1
        K = len(offsets_t)
        nxt = self.stages[k] if k < len(self.stages) - 1 else None
        if isinstance(nxt, nn.Linear) and out.dim() == 2:
            # rank-one update of the next linear layer's output
            changed = acts[k + 1].unsqueeze(0) + (new - base)[:, :, None] * nxt.weight[:, i][None, None, :]
            flat = changed.reshape(K * len(h), -1)
            logits = flat if k + 1 == len(self.stages) else self._run_from(k + 1, flat)
        else:
            layer_in = acts[k].unsqueeze(0).repeat(K, *([1] * acts[k].dim()))
            layer_in[:, :, i] = new
            flat = layer_in.reshape(K * len(h), *acts[k].shape[1:])
            logits = self._run_from(k, flat)
        return self._per_offset(logits, K)

    def _stage_changes(self, stage, name, index, offsets_t) -> np.ndarray:
        h, _ = self._stage_io(stage)
        param = dict(self.model.named_parameters())[name]
        flat_param = param.data.view(-1)
        original = flat_param[index].item()
        losses = []
        try:
            for delta in offsets_t.tolist():
                flat_param[index] = original + delta
                losses.append(float(self._loss(self._run_from(stage, h))))
        finally:
            flat_param[index] = original
        return np.asarray(losses) - self.base

    def _full_changes(self, name, index, offsets_t) -> np.ndarray:
        param = dict(self.model.named_parameters())[name]
        flat_param = param.data.view(-1)
        original = flat_param[index].item()
        losses = []
        try:
            for delta in offsets_t.tolist():
                flat_param[index] = original + delta
                logits = _forward(self.model, self.x, self.task)
                losses.append(float(self._loss(logits)))
        finally:
            flat_param[index] = original
        return np.asarray(losses) - self.base

    def _per_offset(self, logits: torch.Tensor, K: int) -> np.ndarray:
        n = len(self.y)
        per_sample = self.loss_fn(logits, self.y.repeat(K), reduction="none").reshape(K, n)
        return (per_sample.mean(1) - self.base).cpu().numpy()


_ELEMENTWISE = (nn.ReLU, nn.Dropout, nn.Identity, nn.LeakyReLU, nn.Tanh, nn.Sigmoid, nn.GELU, nn.ELU)


def _forward(model: nn.Module, x: torch.Tensor, task) -> torch.Tensor:
    from ..models import ContinualModel

    return model(x, task) if isinstance(model, ContinualModel) else model(x)


def _cross_entropy(logits, y, reduction="mean"):
    return F.cross_entropy(logits, y, reduction=reduction)


# ----------------------------------------------------------------------------- the probe

def loss_profiles(model: nn.Module, x: torch.Tensor, y: torch.Tensor, parameters: Sequence[tuple[str, int]],
                  offsets: np.ndarray, task=None, dtype: torch.dtype = torch.float64,
                  loss_fn: Callable = _cross_entropy) -> np.ndarray:
    """The loss change at ``offsets`` (P x K, parameter units) for each ``(name, index)``.

    ``loss_fn(logits, y, reduction="mean"|"none")`` defaults to the cross-entropy.
    The model is copied (in ``dtype``, float64 by default so that tiny loss
    changes are not rounding noise) and put in eval mode; the original is untouched.
    """
    offsets = np.asarray(offsets, dtype=float)
    if offsets.ndim == 1:
        offsets = np.broadcast_to(offsets, (len(parameters), len(offsets)))
    probe = copy.deepcopy(model).to(dtype).eval()
    x = x.to(dtype)
    evaluator = _LossEvaluator(probe, x, y, task, loss_fn)
    return np.stack([evaluator.changes(name, index, offsets[p]) for p, (name, index) in enumerate(parameters)])


def probe_asymmetry(model: nn.Module, start: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor, *,
                    task=None, per_tensor: int = 64, fractions: Sequence[float] = DEFAULT_FRACTIONS,
                    seed: int = 0, min_move: float = 1e-6, names: Sequence[str] | None = None,
                    dtype: torch.dtype = torch.float64, loss_fn: Callable = _cross_entropy,
                    floor: float = FLAT_FLOOR) -> AsymmetryReport:
    """Measure how a quadratic fitted on the observed side predicts the unobserved side.

    ``model`` holds the trained weights ``theta*``; ``start`` maps parameter
    names to their values before training (``theta0``, e.g. from
    ``clutils.strategies.base.clone_parameters`` before ``fit``); ``x, y`` are
    the samples the loss is computed on (the task's training data, as the
    surrogate approximates the training loss); ``task`` is the task id a
    multi-head model needs. For each sampled parameter the offsets are
    ``fractions * |theta* - theta0|`` on both sides. Parameters whose loss change
    is below ``floor`` are marked ``flat`` and left out of the summaries.
    """
    fractions = tuple(float(f) for f in fractions)
    if not fractions or min(fractions) <= 0:
        raise ValueError(f"fractions must be positive, got {fractions}")
    chosen = select_parameters(model, start, per_tensor, seed, min_move, names)
    if not chosen:
        raise ValueError("no parameter moved between start and the trained model: nothing to probe")
    params = dict(model.named_parameters())
    moved = np.array([float(params[n].detach().view(-1)[i] - start[n].view(-1)[i].to(params[n].device))
                      for n, i in chosen])
    theta = np.array([float(params[n].detach().view(-1)[i]) for n, i in chosen])
    toward_start = -np.sign(moved)  # the observed side: back toward theta0
    f = np.asarray(fractions)
    scale = np.abs(moved)[:, None] * f[None, :]
    # Signed offsets: first the observed side (toward theta0), then the unobserved side.
    offsets = np.concatenate([toward_start[:, None] * scale, -toward_start[:, None] * scale], axis=1)
    change = loss_profiles(model, x, y, chosen, offsets, task, dtype, loss_fn)
    K = len(f)
    h_obs = fit_curvature(scale, change[:, :K])
    h_un = fit_curvature(scale, change[:, K:])
    far = scale[:, -1]
    predicted = h_obs * far ** 2
    actual = change[:, -1]
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(h_obs > 0, h_un / h_obs, np.nan)
    table = pd.DataFrame({
        "name": [n for n, _ in chosen], "index": [i for _, i in chosen], "theta": theta, "moved": moved,
        "h_obs": h_obs, "h_un": h_un, "predicted": predicted, "actual": actual,
        "underestimated": actual > predicted, "ratio": ratio,
    })
    table["loss_scale"] = np.maximum(np.abs(h_obs), np.abs(h_un)) * moved ** 2
    table["flat"] = _is_flat(table, floor)
    # Report the offsets with the observed side negative (left) whichever way the parameter moved.
    return AsymmetryReport(table, np.concatenate([-scale, scale], axis=1), change, fractions, len(y),
                           {"per_tensor": per_tensor, "seed": seed, "min_move": min_move, "dtype": str(dtype),
                            "floor": float(floor)})


def profiles_for_plot(model: nn.Module, x: torch.Tensor, y: torch.Tensor, parameters: Sequence[tuple[str, int]],
                      span: np.ndarray, task=None, steeper_right: bool = True,
                      dtype: torch.dtype = torch.float64) -> pd.DataFrame:
    """Long-form loss profiles for Figure 2: one row per (parameter, offset).

    ``span`` is a 1-D array of offsets (parameter units, both signs). With
    ``steeper_right`` each profile is mirrored so that its steeper half is on the
    right, as in the paper's figure (the column ``mirrored`` says which were).
    """
    span = np.asarray(span, dtype=float)
    change = loss_profiles(model, x, y, parameters, span, task, dtype)
    rows = []
    for p, (name, index) in enumerate(parameters):
        right, left = change[p][span > 0].sum(), change[p][span < 0].sum()
        mirror = steeper_right and left > right
        for offset, value in zip(span, change[p]):
            rows.append({"parameter": f"{name}[{index}]", "name": name, "index": index,
                         "offset": -offset if mirror else offset, "loss_change": value, "mirrored": mirror})
    return pd.DataFrame(rows)
