"""The training recipe each strategy's chapter uses, defined once for the presets and the CLI.

A strategy's hyperparameters are tuned for one way of training: CWR+ and AR1's
lambdas and learning rates assume plain SGD with slow shared layers, SI's ``xi``
the number of Adam steps of the ALASSO chapter's quick profile. A
:class:`Recipe` holds that training (optimiser, learning rates, the shared
layers' rate, the first batch's schedule, the head) and the hyperparameters
tuned with it. The chapter presets (:mod:`clutils.presets.ar1`,
:mod:`clutils.presets.alasso`) build their settings from these recipes, and
``python -m clutils run`` trains a strategy with its recipe unless a flag
overrides it (and then warns).

The recipes are those of the quick profiles (the ones the book runs on a CPU);
``paper`` overrides what the paper profile changes (the ALASSO chapter's
``xi = 0.1`` of the authors' code). Strategies without tuned hyperparameters
(``naive``, ``joint``, ``separate``) have no recipe: they train as the
benchmark's profile says, i.e. like whatever they are compared with.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

HEADS = ("maximal", "expanding")


@dataclass(frozen=True)
class Recipe:
    """How a chapter trains a strategy; ``hp`` are the hyperparameters tuned for this training."""

    chapter: str
    optimizer: str
    lr: float
    batch_size: int
    momentum: float = 0.0
    shared_lr_scale: float = 1.0  # layers below the output learn at lr * shared_lr_scale
    first_epochs: int | None = None  # the first task's own schedule (None: as the others)
    first_lr: float | None = None
    head: str = "maximal"  # a class-incremental single head: maximal or expanding (Appendix A of AR1)
    reset_optimizer: bool = True  # a fresh optimiser state for every task
    hp: dict[str, Any] = field(default_factory=dict)
    paper: dict[str, Any] = field(default_factory=dict)  # fields the paper profile changes
    # The run the hyperparameters were tuned for: how long a task trains matters too (SI's xi
    # has the units of a squared parameter change, so it depends on the number of steps).
    tuned_on: str = ""

    def __post_init__(self) -> None:
        if self.head not in HEADS:
            raise ValueError(f"head must be one of {HEADS}, got {self.head!r}")

    def for_profile(self, profile: str) -> "Recipe":
        """This recipe under ``profile`` (``paper`` applies :attr:`paper`; smoke and quick are the same)."""
        if profile != "paper" or not self.paper:
            return self
        changes = dict(self.paper)
        if "hp" in changes:
            changes["hp"] = {**self.hp, **changes["hp"]}
        return dataclasses.replace(self, paper={}, **changes)

    def training(self) -> dict[str, Any]:
        """The training fields a flag of the CLI can override, by TrainConfig name."""
        return {"optimizer": self.optimizer, "lr": self.lr, "batch_size": self.batch_size,
                "momentum": self.momentum, "shared_lr_scale": self.shared_lr_scale,
                "first_task_epochs": self.first_epochs, "first_task_lr": self.first_lr,
                "reset_optimizer": self.reset_optimizer}

    def describe(self) -> str:
        text = f"{self.optimizer} lr={self.lr:g}"
        if self.momentum:
            text += f" momentum={self.momentum:g}"
        if self.shared_lr_scale != 1.0:
            text += f", shared layers at {self.shared_lr_scale:g} x lr"
        if self.first_epochs or self.first_lr:
            text += f", first task {self.first_epochs or 'same'} epochs at lr {self.first_lr or self.lr:g}"
        text += f", batch {self.batch_size}, {self.head} head"
        text += ", optimiser reset every task" if self.reset_optimizer else ", optimiser kept across tasks"
        if self.hp:
            text += ", " + ", ".join(f"{k}={v!r}" for k, v in self.hp.items())
        text += f" ({self.chapter} chapter"
        return text + (f"; tuned on {self.tuned_on})" if self.tuned_on else ")")


# --- the AR1 chapter (class-incremental split MNIST / Fashion-MNIST, MLP 784-256-256, quick profile):
# plain SGD, batch 32; the shared layers learn at 1/50 of the output layer's rate (QUICK_TUNING in
# clutils.presets.ar1 says how these were chosen).
_AR1_RUN = "5 class-incremental batches of 1,000 images, 2 epochs (~60 SGD steps per batch)"
_AR1_SGD = dict(chapter="ar1", optimizer="sgd", lr=0.02, batch_size=32, shared_lr_scale=0.02, tuned_on=_AR1_RUN)
# Plain fine-tuning: every layer at the same, larger rate (LwF's best in the chapter's tuning).
_AR1_PLAIN = dict(chapter="ar1", optimizer="sgd", lr=0.1, batch_size=32, shared_lr_scale=1.0, tuned_on=_AR1_RUN)

# --- the ALASSO chapter (permuted MNIST / Fashion-MNIST, MLP, quick profile): Adam 1e-3, batch 256,
# Adam's state kept across tasks as in the SI and ALASSO code. ``xi`` is the quick profile's 1e-3
# (the paper's 0.1 protects nothing in a run of ~40 steps per task; see clutils.presets.alasso).
_ALASSO_ADAM = dict(chapter="alasso", optimizer="adam", lr=1e-3, batch_size=256, reset_optimizer=False,
                    tuned_on="20 permuted tasks of 2,000 images, 5 epochs (~40 Adam steps per task)")

RECIPES: dict[str, Recipe] = {
    "cwr": Recipe(**_AR1_SGD),
    "cwr+": Recipe(**_AR1_SGD),
    "ar1": Recipe(**_AR1_SGD, hp={"lam": 8e5, "max_f": 1e-3, "xi": 1e-7, "w_first": 0.0015, "w_rest": 0.0015}),
    "ewc-sit": Recipe(**_AR1_SGD, hp={"lam": 5e3, "max_f": 1e-3}),
    "si-sit": Recipe(**_AR1_SGD, hp={"lam": 5e3, "max_f": 1e-3, "xi": 1e-7, "w_first": 1e-4, "w_rest": 1e-4}),
    "lwf-sit": Recipe(**_AR1_PLAIN, head="expanding", hp={"map_from": [0.5, 0.8], "map_to": [0.45, 0.95]}),
    # Figure 3's multi-task (task-incremental) LwF: Li and Hoiem's constants, plain SGD
    "lwf": Recipe(**_AR1_PLAIN, hp={"lam": 1.0, "temperature": 2.0}),
    "si": Recipe(**_ALASSO_ADAM, hp={"c": 0.1, "xi": 1e-3}, paper={"hp": {"xi": 0.1}}),
    "alasso": Recipe(**_ALASSO_ADAM, hp={"c": 1.0, "a": 2.0, "xi": 1e-3},
                     paper={"hp": {"a": 1.8, "epsilon": 1e-6, "xi": 0.1, "c_prime": 1.0, "a_prime": 1.0,
                                   "epsilon_prime": 0.0}}),
    "ewc": Recipe(**_ALASSO_ADAM, hp={"lam": 100.0, "fisher_samples": 200}, paper={"hp": {"fisher_samples": 1000}}),
    "mas": Recipe(**_ALASSO_ADAM, hp={"lam": 1.0, "samples": 200}, paper={"hp": {"samples": 1000}}),
}

# --- the HAT chapter (task-incremental split Fashion-MNIST / CIFAR, gated networks of clutils.models_hat):
# the paper's and the authors' code's plain SGD, lr 0.05, batch 64, no momentum and no weight decay (either
# would move parameters whose gradient HAT's masks set to zero); c and s_max at the paper's 0.75 and 400.
RECIPES["hat"] = Recipe(chapter="hat", optimizer="sgd", lr=0.05, batch_size=64, hp={"c": 0.75, "s_max": 400.0},
                        tuned_on="not tuned: the paper's constants")


# --- the SPP chapter (task-incremental split Fashion-MNIST, MLP with dropout 0.5, quick profile):
# Adam 1e-3, batch 64, not the paper's plain SGD: SPP's importance is heavy-tailed, and with SGD the
# penalty's step 2 lr lam Omega on the most important weights overshoots (the loss diverges) before
# lam protects the bulk of the weights (SGD at lr 0.05 diverged from lam ~300 and barely helped
# below). lam = 800 is the paper's 4 times the quick profile's lam_scale of 200 (clutils.presets.spp:
# the importance's scale depends on the run). The entropy is summed over batches of 100 (the authors'
# code). The paper profile is the paper's: SGD lr 0.1, batch 256, lam = 4.
_SPP_TRAINING = dict(chapter="spp", optimizer="adam", lr=1e-3, batch_size=64,
                     paper={"optimizer": "sgd", "lr": 0.1, "batch_size": 256, "hp": {"lam": 4.0}},
                     tuned_on="5 task-incremental tasks of split Fashion-MNIST, 400 images each, 5 epochs")
RECIPES["spp"] = Recipe(**{**_SPP_TRAINING, "hp": {"lam": 800.0, "batch_size": 100}})
RECIPES["sgd-f"] = Recipe(**{**_SPP_TRAINING, "paper": {"optimizer": "sgd", "lr": 0.1, "batch_size": 256}})


# --- the replay chapter (class-incremental split Fashion-MNIST, MLP 784-100-100-10, quick profile):
# the DER authors' setting for sequential MNIST (plain SGD, batch 10, a replay batch as large, one
# epoch, a maximal head); lr 0.03 and alpha/beta are their Appendix values for DER/DER++ at buffer 200.
_REPLAY_SGD = dict(chapter="replay", optimizer="sgd", lr=0.03, batch_size=10,
                   tuned_on="5 class-incremental tasks of split Fashion-MNIST, 600 images a class, 1 epoch")
RECIPES.update({
    "er": Recipe(**_REPLAY_SGD, hp={"buffer_size": 200}),
    "der": Recipe(**_REPLAY_SGD, hp={"buffer_size": 200, "alpha": 0.2}),
    "der++": Recipe(**_REPLAY_SGD, hp={"buffer_size": 200, "alpha": 0.2, "beta": 1.0}),
    "a-gem": Recipe(**_REPLAY_SGD, hp={"buffer_size": 200}),
    "gem": Recipe(**_REPLAY_SGD, hp={"buffer_size": 200, "margin": 0.5}),
    # iCaRL: the same training on the task's data and its exemplars (buffer_size is the total memory M)
    "icarl": Recipe(**_REPLAY_SGD, hp={"buffer_size": 200}),
})


def recipe_of(name: str, profile: str = "quick") -> Recipe | None:
    """The recipe of strategy ``name`` under ``profile`` (None: the strategy has none)."""
    recipe = RECIPES.get(name)
    return recipe.for_profile(profile) if recipe is not None else None

# --- the replay chapter, deep generative replay (notebooks/replay_9_generative.ipynb): Adam 1e-3, batch
# 128 for the solver (van de Ven and Tolias's split MNIST setting, Appendix of "Three scenarios"); the
# generator's own settings are the strategy's defaults (a small VAE trained 10 epochs per task).
RECIPES["dgr"] = Recipe(chapter="replay", optimizer="adam", lr=1e-3, batch_size=128,
                        tuned_on="5 split Fashion-MNIST tasks of 2,000 images, 2 epochs")

# --- the expansion chapter, progressive networks (task-incremental split Fashion-MNIST, MLP columns): Adam
# 1e-3, batch 64, and a fresh optimiser every task (required: the optimiser must hold the new column, and
# only it, so that no earlier column is touched). The paper's RL training (A3C) has no counterpart here.
RECIPES["pnn"] = Recipe(chapter="expansion", optimizer="adam", lr=1e-3, batch_size=64, reset_optimizer=True,
                        tuned_on="not tuned: a plain supervised recipe (the paper trains with A3C)")
# --- the DEN chapter (notebooks/expansion_2_den.ipynb: one-versus-rest binary tasks on rotated, noised
# Fashion-MNIST, the stand-in of MNIST-Variation): Adam 1e-3 as the authors' code, batch 32 for tasks of a
# few hundred images. DEN's own passes (selective retraining, expansion, split) train with the same Adam,
# lr and batch (its ``epochs``, ``lr`` and ``batch_size``); l1, group and l2 differ from the code's (the
# quick profile's short runs; clutils.presets.den says how they were chosen).
RECIPES["den"] = Recipe(chapter="den", optimizer="adam", lr=1e-3, batch_size=32,
                        hp={"l1": 1e-4, "group": 1e-2, "l2": 2.0, "tau": 0.01, "sigma": 0.05, "k": 10, "epochs": 5,
                            "lr": 1e-3, "batch_size": 32},
                        paper={"batch_size": 256, "hp": {"l1": 1e-5, "group": 1e-3, "l2": 0.5, "epochs": 10, "batch_size": 256}},
                        tuned_on="10 binary tasks of rotated, noised Fashion-MNIST, 400 images each, 10 epochs")
