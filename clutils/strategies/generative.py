"""Deep generative replay (Shin, Lee, Kim and Kim, NeurIPS 2017), weighted as van de Ven and Tolias.

A *scholar* is a pair: a generator that produces inputs like those seen so far
and a solver (the classifier) that labels them. While task ``t`` is trained,
the previous scholar replays: each step trains the solver on the current batch
followed by as many replayed inputs ``x'``, drawn from the previous generator and
labelled by the previous solver (its most probable class, among the classes
seen so far in the class-incremental scenario)::

    L_solver = r * CE(h(x), y) + (1 - r) * CE(h(x'), argmax h_old(x')),   r = 1 / t

(Shin et al., Eq. 2 with the ratio ``r`` of real data; ``r = 1/t`` is van de
Ven and Tolias's choice, 2019, Section 4: every task seen so far weighs the same.
``ratio`` fixes ``r`` instead, as Shin et al. do.) After the task, the generator
learns the current inputs mixed with the previous generator's samples, with the
same weights (:func:`clutils.generators.train_vae`), and the solver is
snapshotted: together they are the scholar of the next task.

The generator is a small variational autoencoder (:class:`clutils.generators.VAE`,
one hidden layer of 400 units, a 20-dimensional code) rather than the paper's
WGAN-GP: it trains in seconds on a CPU (van de Ven and Tolias also use a VAE).

``replay`` chooses what the previous scholar replays, the controls of Shin et
al.'s Figure 3 (permuted MNIST):

* ``generative``: samples of the generator (deep generative replay);
* ``exact``: real inputs of the earlier tasks, all of them kept ("exact replay",
  the generator replaced by the true input distribution);
* ``noise``: Gaussian noise N(0, 1) in the standardised input space ("noise");
* ``none``: nothing (plain fine-tuning, "none").

In every mode the replayed targets come from the previous solver, so the
modes differ only in the inputs. Task-incremental runs give each replayed
input an earlier task drawn uniformly (``exact``: the task it came from) and
label it with that task's head.

How the loss is formed in the loop: :meth:`extend_batch` appends the replayed
samples to the current batch, and the loop minimises the cross-entropy averaged
over the concatenation, which weighs both parts by their sizes (1/2 each);
:meth:`penalty` returns the difference to ``L_solver`` above
(:func:`replay_correction`), so that each step minimises ``L_solver`` exactly.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from ..generators import VAE, frozen_copy, train_vae
from ..models import MASKED_LOGIT
from .base import Batch, Strategy
from .registry import register

REPLAY_MODES = ("generative", "exact", "noise", "none")


def replay_ratio(task_number: int, ratio: float | None = None) -> float:
    """``r`` of the task ``task_number`` (1 for the first): ``ratio`` if given, else ``1 / t``."""
    if task_number < 1:
        raise ValueError(f"task numbers start at 1, got {task_number}")
    return float(ratio) if ratio is not None else 1.0 / task_number


def solver_loss(logits: torch.Tensor, y: torch.Tensor, n_current: int, r: float) -> torch.Tensor:
    """``r * CE(current) + (1 - r) * CE(replayed)``: the first ``n_current`` rows are the current batch."""
    current = F.cross_entropy(logits[:n_current], y[:n_current])
    if n_current == len(y):
        return current
    return r * current + (1 - r) * F.cross_entropy(logits[n_current:], y[n_current:])


def replay_correction(logits: torch.Tensor, y: torch.Tensor, n_current: int, r: float) -> torch.Tensor:
    """What to add to the loop's loss (the mean cross-entropy over all rows) to get :func:`solver_loss`."""
    return solver_loss(logits, y, n_current, r) - F.cross_entropy(logits, y)


@torch.no_grad()
def scholar_labels(solver: torch.nn.Module, x: torch.Tensor, task: int | torch.Tensor | None,
                   allowed: torch.Tensor | None = None) -> torch.Tensor:
    """The previous solver's most probable class for each input (``allowed``: a mask over the outputs)."""
    logits = solver(x, task)
    if allowed is not None:
        logits = logits.masked_fill(~allowed, MASKED_LOGIT)
    return logits.argmax(1)


@register
class DeepGenerativeReplay(Strategy):
    """Deep generative replay with a VAE generator (see the module docstring).

    Hyperparameters: ``replay`` (one of :data:`REPLAY_MODES`), ``ratio`` (``r``; None:
    ``1/t``), and the generator's ``z_dim``, ``gen_hidden`` (width), ``gen_steps`` (Adam
    steps per task), ``gen_lr`` (Adam) and ``gen_batch_size``.
    """

    name = "dgr"
    defaults = {"replay": "generative", "ratio": None, "z_dim": 20, "gen_hidden": 400, "gen_steps": 500,
                "gen_lr": 1e-3, "gen_batch_size": 128}
    positive = frozenset({"z_dim", "gen_hidden", "gen_steps", "gen_lr", "gen_batch_size"})

    def __init__(self, **hyperparameters: Any):
        super().__init__(**hyperparameters)
        if self.hp["replay"] not in REPLAY_MODES:
            raise ValueError(f"dgr: replay must be one of {', '.join(REPLAY_MODES)}, got {self.hp['replay']!r}")
        ratio = self.hp["ratio"]
        if ratio is not None and not 0.0 < ratio <= 1.0:
            raise ValueError(f"dgr: ratio (r, the weight of the current data) must lie in (0, 1], got {ratio}")
        #: With a positive value, ``after_task`` keeps that many generator samples (drawn from a fixed
        #: seed, the same codes after every task) in :attr:`samples_after_task`, for figures.
        self.record_samples = 0
        self.generator: VAE | None = None
        self._reset()

    def _reset(self) -> None:
        self.trained: list[int] = []  # indices of the tasks trained so far
        self.seen: list[int] = []  # single head: the outputs (labels) of those tasks
        self.solver: torch.nn.Module | None = None  # the previous scholar's solver
        self._pending_solver: dict[str, torch.Tensor] | None = None  # loaded, rebuilt on first use
        self.memory_x: torch.Tensor | None = None  # exact replay: every earlier task's inputs
        self.memory_task: torch.Tensor | None = None
        self.generator_losses: list[list[float]] = []
        self.samples_after_task: list[torch.Tensor] = []
        self._n_current: int | None = None  # rows of the current batch in the extended batch

    # -- hooks -------------------------------------------------------------------------------------
    def setup(self, model, benchmark) -> None:
        super().setup(model, benchmark)
        self._reset()
        self.generator = None
        if self.hp["replay"] == "generative":
            device = next(model.parameters()).device
            self.generator = VAE(benchmark.input_shape, self.hp["gen_hidden"], self.hp["z_dim"]).to(device)

    @property
    def r(self) -> float:
        """The weight of the current data in the task being trained."""
        return replay_ratio(len(self.trained) + 1, self.hp["ratio"])

    def replays(self) -> bool:
        return self.hp["replay"] != "none" and bool(self.trained)

    def extend_batch(self, x, y, task):
        self._n_current = None
        if not self.replays():
            return x, y, task
        n = len(y)
        x_old, task_old = self._replayed_inputs(n, x)
        allowed = self._allowed(x.device)
        y_old = scholar_labels(self._previous_solver(), x_old, task_old, allowed)
        self._n_current = n
        if task is not None and not isinstance(task, torch.Tensor):
            task = torch.full((n,), int(task), dtype=torch.int64, device=x.device)
        task_all = None if task is None else torch.cat([task, task_old])
        return torch.cat([x, x_old]), torch.cat([y, y_old]), task_all

    def penalty(self, model, batch: Batch):
        n, self._n_current = self._n_current, None
        if n is None or n == len(batch.y):
            return None
        return replay_correction(batch.logits, batch.y, n, self.r)

    def after_task(self, model, task, data) -> None:
        mode = self.hp["replay"]
        if mode == "generative":
            self._train_generator(task.train.x)
        elif mode == "exact":
            ids = torch.full((len(task.train),), task.index, dtype=torch.int64, device=task.train.x.device)
            self.memory_x = task.train.x if self.memory_x is None else torch.cat([self.memory_x, task.train.x])
            self.memory_task = ids if self.memory_task is None else torch.cat([self.memory_task, ids])
        if task.index not in self.trained:
            self.trained.append(task.index)
        self.seen = sorted(set(self.seen) | set(torch.unique(task.train.y).tolist()))
        self.solver, self._pending_solver = frozen_copy(model), None
        if self.record_samples and self.generator is not None and mode == "generative":
            codes = torch.Generator().manual_seed(0)
            self.samples_after_task.append(self.generator.sample(self.record_samples, codes).cpu())

    # -- helpers -----------------------------------------------------------------------------------
    def _train_generator(self, x: torch.Tensor) -> None:
        """The new generator: the current inputs mixed with the previous generator's samples (weights r, 1-r)."""
        previous = frozen_copy(self.generator) if self.trained else None
        losses = train_vae(self.generator, x, steps=self.hp["gen_steps"], batch_size=self.hp["gen_batch_size"],
                           lr=self.hp["gen_lr"], replay=previous.sample if previous is not None else None,
                           r=self.r)
        self.generator_losses.append(losses)

    def _replayed_inputs(self, n: int, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``n`` inputs of the earlier tasks and, in the task-incremental scenario, their task ids."""
        mode, device = self.hp["replay"], like.device
        earlier = torch.tensor(self.trained, dtype=torch.int64, device=device)
        task_ids = earlier[torch.randint(len(earlier), (n,), device=device)]
        if mode == "generative":
            x = self.generator.sample(n)
        elif mode == "noise":
            x = torch.randn((n, *like.shape[1:]), device=device)
        else:  # exact
            index = torch.randint(len(self.memory_x), (n,), device=device)
            x, task_ids = self.memory_x[index], self.memory_task[index]
        return x, (task_ids if self.benchmark.scenario == "task" else None)

    def _allowed(self, device) -> torch.Tensor | None:
        """Class-incremental: only the classes seen so far may be replayed labels."""
        if self.benchmark.scenario != "class":
            return None
        allowed = torch.zeros(self.benchmark.n_classes, dtype=torch.bool, device=device)
        allowed[self.seen] = True
        return allowed

    def _previous_solver(self) -> torch.nn.Module:
        if self.solver is None:
            raise RuntimeError("dgr: no previous solver (replay starts after the first task)")
        return self.solver

    def rebuild(self, model: torch.nn.Module) -> None:
        """After ``load_state_dict``: rebuild the previous solver from its weights, on ``model``'s structure."""
        if self._pending_solver is not None:
            solver = frozen_copy(model)
            solver.load_state_dict(self._pending_solver)
            self.solver, self._pending_solver = solver, None

    def before_task(self, model, task) -> None:
        self.rebuild(model)

    # -- checkpointing -----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"trained": list(self.trained), "seen": list(self.seen),
                                 "generator_losses": [list(map(float, l)) for l in self.generator_losses]}
        if self.generator is not None:
            state.update({f"generator.{k}": v.detach().clone() for k, v in self.generator.state_dict().items()})
        solver = self.solver.state_dict() if self.solver is not None else self._pending_solver
        if solver is not None:
            state.update({f"solver.{k}": v.detach().clone() for k, v in solver.items()})
        if self.memory_x is not None:
            state["memory_x"], state["memory_task"] = self.memory_x.clone(), self.memory_task.clone()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._reset()
        self.trained = [int(t) for t in state.get("trained", [])]
        self.seen = [int(c) for c in state.get("seen", [])]
        self.generator_losses = [list(map(float, l)) for l in state.get("generator_losses", [])]
        generator = {k[len("generator."):]: v for k, v in state.items() if k.startswith("generator.")}
        if generator:
            if self.generator is None:
                raise ValueError("dgr: call setup before load_state_dict (the generator is built there)")
            self.generator.load_state_dict(generator)
        self._pending_solver = {k[len("solver."):]: v for k, v in state.items() if k.startswith("solver.")} or None
        if "memory_x" in state:
            self.memory_x, self.memory_task = state["memory_x"], state["memory_task"]
