"""DEN: dynamically expandable networks (Yoon, Yang, Lee and Hwang, ICLR 2018, Section 3, Algorithm 1).

Needs the growable network of :mod:`clutils.models_den` (``--arch den-mlp``) and a
task-incremental benchmark. For task 1 the whole network trains with an L1 penalty
(a sparse start). For every later task ``t``:

1. **selective retraining** (Section 3, Eq. 2): first only task t's output layer
   trains, with L1 sparsity (the loop's own epochs); then a breadth-first search
   from the outputs that came out non-zero selects the units connected to them by
   non-zero weights, layer by layer downwards (:func:`select_subnetwork`), and that
   subnetwork retrains with an L2 pull to the previous weights,
   ``L(W; D_t) + (lambda/2) ||W - W^{t-1}||_2^2`` (:func:`l2_pull`);
2. **dynamic expansion** (Eq. 4): if the loss stays above ``tau`` (:func:`needs_expansion`),
   ``k`` units are added to every layer and only they train, with
   ``mu ||W^N||_1 + gamma sum_g ||W^N_g||_2`` (a group ``g`` is a new unit's incoming
   weights), both as proximal steps after every optimiser step (:func:`prox_l1`,
   :func:`prox_group_lasso`); new units whose incoming weights all reached zero are
   removed (:func:`dead_units`);
3. **split/duplication** (Eq. 5): a unit whose incoming weights drifted by
   ``rho_i = ||w_i^t - w_i^{t-1}||_2 > sigma`` is copied into a new unit born at
   ``t`` and restored to its value after task ``t-1``; the most-drifted units are split
   first, at most ``max_split`` per layer (:func:`units_to_split`); the copies then retrain;
4. **timestamped inference**: every unit records the task it was added for, and task
   ``t`` uses only the units born up to ``t`` (:class:`clutils.models_den.DENMLP`).

**Design in one training loop.** The loop (:mod:`clutils.train`) trains each task for
its epochs with the strategy's hooks; that pass is phase 1a (task 1: the whole network).
Phases 1b, 2 and 3 are extra passes run from ``after_task`` with the loop's own
:func:`clutils.train.train_task` and :func:`clutils.train.make_optimizer` (a fresh Adam per
pass, ``epochs`` epochs of ``batch_size`` at ``lr``): no second training loop. What a pass
trains is an element-wise mask on every parameter's gradient (``after_backward``); its L1
and group-lasso steps run in ``after_step`` on the masked entries only. Because shapes
never change (units are switched on and off, :mod:`clutils.models_den`), the optimiser
and a checkpoint stay valid; a pass's shuffling seed comes from the run's seed
(``torch.initial_seed()`` at ``setup``, which the loop sets to ``TrainConfig.seed``).

Defaults are the authors' MNIST code's (``DEN_run.py``): L1 threshold ``1e-5`` and group
threshold ``1e-3`` per step, L2 pull ``0.5`` (``tf.nn.l2_loss`` halves the square),
``k = 10``, ``tau = 0.01``, ``sigma = 0.05``, Adam at 1e-3, batch 256. Where the paper and
the code differ (the code splits the *least*-drifted units above ``sigma``:
``argsort(...)[:k]``; it splits only after an expansion) this module follows the paper;
the chapter lists the differences.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch

from .base import Batch, Strategy
from .registry import register

PHASES = ("first", "top", "subnetwork", "expansion", "split")


# -- the formulas, as functions of tensors (tested against closed forms) ------------------------
def prox_l1(w: torch.Tensor, threshold: float) -> torch.Tensor:
    """Proximal step of ``threshold ||w||_1``: ``sign(w) max(|w| - threshold, 0)`` (soft thresholding)."""
    return torch.sign(w) * torch.clamp(w.abs() - threshold, min=0)


def prox_group_lasso(w: torch.Tensor, threshold: float) -> torch.Tensor:
    """Proximal step of ``threshold sum_g ||w_g||_2`` with one group per row (a unit's incoming weights):
    ``w_g max(0, 1 - threshold / ||w_g||_2)`` (a row whose norm is at most ``threshold`` becomes zero)."""
    norms = w.norm(dim=1, keepdim=True)
    scale = torch.clamp(1 - threshold / norms.clamp_min(1e-30), min=0)
    return w * scale


def l2_pull(params: Sequence[torch.Tensor], anchors: Sequence[torch.Tensor], masks: Sequence[torch.Tensor],
            lam: float) -> torch.Tensor:
    """``(lambda/2) sum ||m * (W - W^{t-1})||_2^2`` over the retrained entries ``m`` (Eq. 2's L2 term)."""
    total = sum(((p - a) * m).pow(2).sum() for p, a, m in zip(params, anchors, masks))
    return 0.5 * lam * total


def select_subnetwork(weights: Sequence[torch.Tensor], head: torch.Tensor,
                      active: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Breadth-first selection of the units connected to the task's outputs (Section 3, selective retraining).

    ``weights[l]``: layer ``l``'s matrix (units of ``l`` x units of ``l-1``; ``weights[0]`` reads
    the input); ``head``: the task's output layer (outputs x units of the last layer);
    ``active[l]``: the units that exist. The top layer's selected units are those with a
    non-zero weight to an output; layer ``l-1``'s, those with a non-zero weight to a selected
    unit of layer ``l``. Returns one bool mask per hidden layer.
    """
    selected = [None] * len(weights)
    selected[-1] = active[-1] & (head != 0).any(0)
    for l in range(len(weights) - 1, 0, -1):
        reach = (weights[l][selected[l]] != 0).any(0)
        selected[l - 1] = active[l - 1] & reach
    return selected


def needs_expansion(loss: float, tau: float) -> bool:
    """Expand when the loss after selective retraining stays above ``tau``."""
    return loss > tau


def drift(current: torch.Tensor, previous: torch.Tensor) -> torch.Tensor:
    """``rho_i = ||w_i^t - w_i^{t-1}||_2`` for every unit ``i`` (a row of incoming weights)."""
    return (current - previous).norm(dim=1)


def units_to_split(rho: torch.Tensor, candidates: torch.Tensor, sigma: float, max_split: int) -> torch.Tensor:
    """The units to split: among ``candidates`` (bool) with ``rho > sigma``, the ``max_split`` MOST drifted,
    most drifted first (the paper; the authors' code keeps the least drifted)."""
    eligible = candidates & (rho > sigma)
    index = torch.nonzero(eligible).flatten()
    order = torch.argsort(rho[index], descending=True)
    return index[order][:max_split]


def dead_units(weight: torch.Tensor, units: torch.Tensor) -> torch.Tensor:
    """The ``units`` (indices) whose incoming weights are all zero (removed after an expansion)."""
    return units[(weight[units] == 0).all(1)]


@register
class DEN(Strategy):
    """Dynamically expandable networks: selective retraining, dynamic expansion, split/duplication."""

    name = "den"
    defaults = {"l1": 1e-5, "l2": 0.5, "group": 1e-3, "k": 10, "tau": 0.01, "sigma": 0.05, "max_split": 10,
                "epochs": 5, "lr": 1e-3, "batch_size": 256}
    positive = frozenset({"lr", "batch_size", "epochs"})
    scenarios = ("task",)
    model_arch = "den-mlp"

    def __init__(self, **hyperparameters):
        super().__init__(**hyperparameters)
        self.phase = "first"
        self.masks: dict[str, torch.Tensor] = {}
        self.anchor: dict[str, torch.Tensor] = {}
        self.group_rows: dict[int, torch.Tensor] = {}
        self.seed = 0
        self._targets: list[tuple[torch.Tensor, torch.Tensor]] | None = None
        #: per task: the phases that ran, their last-epoch loss, units added, removed and split per layer
        self.log: list[dict] = []

    # -- setup and masks -----------------------------------------------------------------------
    def setup(self, model, benchmark) -> None:
        if not hasattr(model, "unit_mask") or not hasattr(model, "activate"):
            raise TypeError("DEN needs a growable network: clutils.models_den.build_den_model(benchmark) "
                            "(or --arch den-mlp on the command line)")
        if benchmark.scenario != "task":
            raise ValueError(f"DEN is task-incremental; the benchmark is {benchmark.scenario}")
        super().setup(model, benchmark)
        self.seed = torch.initial_seed() % (2 ** 31)

    def _empty_masks(self, model) -> dict[str, torch.Tensor]:
        return {n: torch.zeros_like(p) for n, p in model.named_parameters()}

    def _head(self, masks, model, task: int, columns: torch.Tensor) -> None:
        masks[f"head.heads.{task}.weight"][:, columns] = 1
        masks[f"head.heads.{task}.bias"][:] = 1

    def _first_masks(self, model, task: int) -> dict[str, torch.Tensor]:
        """Task 1: every weight between active units, and the task's head."""
        masks = self._empty_masks(model)
        before = torch.ones(model.in_features, dtype=torch.bool, device=model.active(0).device)
        for l in range(model.n_layers):
            rows = model.active(l)
            masks[f"fcs.{l}.weight"][rows.nonzero().flatten().unsqueeze(1), before.nonzero().flatten()] = 1
            masks[f"fcs.{l}.bias"][rows] = 1
            before = rows
        self._head(masks, model, task, before)
        return masks

    def _top_masks(self, model, task: int) -> dict[str, torch.Tensor]:
        masks = self._empty_masks(model)
        self._head(masks, model, task, model.unit_mask(model.n_layers - 1, task))
        return masks

    def _subnetwork_masks(self, model, task: int) -> tuple[dict[str, torch.Tensor], list[torch.Tensor]]:
        weights = [fc.weight.detach() for fc in model.fcs]
        active = [model.unit_mask(l, task) for l in range(model.n_layers)]
        selected = select_subnetwork(weights, model.head.heads[task].weight.detach(), active)
        masks = self._empty_masks(model)
        before = torch.ones(model.in_features, dtype=torch.bool, device=weights[0].device)
        for l, rows in enumerate(selected):
            masks[f"fcs.{l}.weight"][rows.nonzero().flatten().unsqueeze(1), before.nonzero().flatten()] = 1
            masks[f"fcs.{l}.bias"][rows] = 1
            before = rows
        self._head(masks, model, task, selected[-1])
        return masks, selected

    def _new_unit_masks(self, model, task: int, new: dict[int, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The new units' incoming weights (from every unit task ``task`` uses) and outgoing weights."""
        masks = self._empty_masks(model)
        for l, units in new.items():
            if len(units) == 0:
                continue
            inputs = model.unit_mask(l - 1, task) if l > 0 else torch.ones(model.in_features, dtype=torch.bool,
                                                                           device=units.device)
            masks[f"fcs.{l}.weight"][units.unsqueeze(1), inputs.nonzero().flatten()] = 1
            masks[f"fcs.{l}.bias"][units] = 1
            if l + 1 < model.n_layers:
                rows = model.unit_mask(l + 1, task).nonzero().flatten()
                masks[f"fcs.{l + 1}.weight"][rows.unsqueeze(1), units] = 1
        self._head(masks, model, task, model.unit_mask(model.n_layers - 1, task))
        return masks

    # -- the loop's hooks ----------------------------------------------------------------------
    def before_task(self, model, task) -> None:
        self.anchor = {n: p.detach().clone() for n, p in model.named_parameters()}
        self.group_rows = {}
        if task.index == 0:
            self._use("first", self._first_masks(model, task.index))
        else:
            self._use("top", self._top_masks(model, task.index))

    def penalty(self, model, batch: Batch) -> torch.Tensor | None:
        if self.phase != "subnetwork" or self.hp["l2"] == 0:
            return None
        names = [n for n in self.masks if n.startswith("fcs.")]
        params = dict(model.named_parameters())
        return l2_pull([params[n] for n in names], [self.anchor[n] for n in names], [self.masks[n] for n in names],
                       self.hp["l2"])

    def after_backward(self, model) -> None:
        with torch.no_grad():
            pairs = [(p.grad, self.masks[n]) for n, p in model.named_parameters() if p.grad is not None]
            torch._foreach_mul_([g for g, _ in pairs], [m for _, m in pairs])

    def _l1_targets(self, model) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The weight matrices the current pass trains, with their masks (cached per pass)."""
        if self._targets is None:
            self._targets = [(p, self.masks[n].bool()) for n, p in model.named_parameters()
                             if n.endswith("weight") and self.masks[n].any()]
        return self._targets

    def _use(self, phase: str, masks: dict[str, torch.Tensor]) -> None:
        """Start ``phase``, training the entries of ``masks``."""
        self.phase, self.masks, self._targets = phase, masks, None

    def after_step(self, model) -> None:
        with torch.no_grad():
            if self.hp["l1"] > 0:
                for p, m in self._l1_targets(model):
                    p.copy_(torch.where(m, prox_l1(p, self.hp["l1"]), p))
            for l, rows in self.group_rows.items():
                w = model.fcs[l].weight
                w[rows] = prox_group_lasso(w[rows], self.hp["group"])

    def after_task(self, model, task, data) -> None:
        entry = {"task": task.index, "losses": {}, "added": [0] * model.n_layers, "removed": [0] * model.n_layers,
                 "split": [0] * model.n_layers, "selected": None}
        if task.index > 0:
            self._selective_retraining(model, task, data, entry)
            if needs_expansion(entry["losses"]["subnetwork"], self.hp["tau"]):
                self._expand(model, task, data, entry)
            self._split(model, task, data, entry)
        self._use("first", {})
        self.group_rows = {}
        entry["units"] = model.n_units()
        entry["parameters"] = model.n_parameters(task.index + 1)
        self.log.append(entry)

    # -- the extra passes ----------------------------------------------------------------------
    def _pass(self, model, task, data, phase: str, masks: dict[str, torch.Tensor]) -> float:
        """Train ``task`` for ``epochs`` epochs with the loop's own step; returns the last epoch's loss."""
        from ..train import TrainConfig, make_optimizer, train_task  # the loop imports the strategies
        self._use(phase, masks)
        config = TrainConfig(epochs=self.hp["epochs"], batch_size=self.hp["batch_size"], lr=self.hp["lr"],
                             optimizer="adam", seed=self.seed + 7919 * (PHASES.index(phase) + 1), progress=False)
        losses, _ = train_task(model, self.benchmark, task, data, self, make_optimizer(model, config), config)
        return losses[-1]

    def _selective_retraining(self, model, task, data, entry) -> None:
        masks, selected = self._subnetwork_masks(model, task.index)
        entry["selected"] = [int(s.sum()) for s in selected]
        entry["losses"]["subnetwork"] = self._pass(model, task, data, "subnetwork", masks)

    def _expand(self, model, task, data, entry) -> None:
        # at most the layer's reserved units (a full layer grows no more: the log says so)
        room = [int((~model.active(l)).sum()) for l in range(model.n_layers)]
        entry["capacity_reached"] = [r < self.hp["k"] for r in room]
        new = {l: model.activate(l, min(self.hp["k"], room[l]), task.index) for l in range(model.n_layers)}
        entry["added"] = [len(u) for u in new.values()]
        self.group_rows = new
        entry["losses"]["expansion"] = self._pass(model, task, data, "expansion", self._new_unit_masks(model, task.index, new))
        self.group_rows = {}
        for l in range(model.n_layers):  # from the bottom: a dead unit's outgoing weights go with it
            dead = dead_units(model.fcs[l].weight.detach(), new[l])
            model.deactivate(l, dead)
            entry["removed"][l] = len(dead)

    @torch.no_grad()
    def _duplicate(self, model, layer: int, units: torch.Tensor, task: int) -> torch.Tensor:
        """Copy ``units`` of ``layer`` into new units born at ``task``; restore the originals to W^{t-1}."""
        fc = model.fcs[layer]
        copies = model.activate(layer, len(units), task)
        fc.weight[copies] = fc.weight[units]
        fc.bias[copies] = fc.bias[units]
        for w in model.outgoing(layer):
            w[:, copies] = w[:, units]
        fc.weight[units] = self.anchor[f"fcs.{layer}.weight"][units]
        fc.bias[units] = self.anchor[f"fcs.{layer}.bias"][units]
        return copies

    def _split(self, model, task, data, entry) -> None:
        copies = {}
        for l in range(model.n_layers):
            old = model.active(l) & (model.birth(l) < task.index)
            rho = drift(model.fcs[l].weight.detach(), self.anchor[f"fcs.{l}.weight"])
            units = units_to_split(rho, old, self.hp["sigma"], self.hp["max_split"])
            free = int((~model.active(l)).sum())
            units = units[:free]  # no more copies than the layer has room for
            copies[l] = self._duplicate(model, l, units, task.index) if len(units) else units
            entry["split"][l] = len(units)
        if any(len(c) for c in copies.values()):
            entry["losses"]["split"] = self._pass(model, task, data, "split",
                                                  self._new_unit_masks(model, task.index, copies))

    # -- checkpointing -------------------------------------------------------------------------
    def state_dict(self):
        return {"seed": self.seed}

    def load_state_dict(self, state) -> None:
        state = dict(state)
        self.seed = int(state.pop("seed", self.seed))
        if state:
            raise ValueError(f"den keeps only its seed, got {sorted(state)}")
