"""Presets of the replay chapter's deep generative replay notebook (Shin et al., NeurIPS 2017).

``dgr`` has three parts, each a benchmark and its training:

* ``chain``: Section 4.1's chain of scholars: the first solver and generator learn the
  real training set (all ten classes), each later one only the previous scholar's
  samples and labels; every solver is tested on the real test set;
* ``permuted``: Figure 3 (permuted MNIST, domain-incremental): generative replay
  against exact replay, noise replay and no replay;
* ``split``: class-incremental split MNIST (5 tasks of two classes, Shin et al.'s
  Figure 5 and van de Ven and Tolias's Class-IL), generative replay against no replay,
  over :func:`clutils.scorecard.core_seeds` seeds (the core claim).

The ``paper`` profile keeps the book's VAE generator (the paper uses a WGAN-GP) but with
van de Ven and Tolias's budget: 2,000 generator steps per task (batch 128) and full
datasets; the solver is the 2x400 MLP of van de Ven and Tolias's split MNIST. ``quick``
runs the notebook in about three minutes of one CPU thread: Fashion-MNIST stand-ins
(the book's offline dataset), 500 training images per class, a 2x256 MLP, a VAE of 256
hidden units trained 150-500 steps of 64 images. ``smoke``: seconds.
"""
from ..strategies.recipes import recipe_of
from . import define

_RECIPE = recipe_of("dgr")
_SOLVER = {"optimizer": _RECIPE.optimizer, "lr": _RECIPE.lr, "batch_size": _RECIPE.batch_size, "arch": "mlp"}
MODES = ["generative", "exact", "noise", "none"]  # Figure 3's curves: GR, ER, Noise, None


def _gen(steps: int, hidden: int, batch: int, z_dim: int = 20) -> dict:
    return {"gen_steps": steps, "gen_hidden": hidden, "gen_batch_size": batch, "z_dim": z_dim}


define(
    "dgr",
    smoke={
        "chain": {**_SOLVER, "dataset": "mnist", "scholars": 3, "hidden": [32], "train_per_class": 20,
                  "test_per_class": 10, "first_epochs": 2, "solver_steps": 10, "gen": _gen(20, 32, 32, 8),
                  "samples_shown": 8},
        "permuted": {**_SOLVER, "dataset": "mnist", "tasks": 3, "hidden": [32], "epochs": 1, "train_per_class": 20,
                     "test_per_class": 10, "modes": MODES, "gen": _gen(20, 32, 32, 8)},
        "split": {**_SOLVER, "dataset": "mnist", "tasks": 5, "hidden": [32], "epochs": 1, "train_per_class": 20,
                  "test_per_class": 10, "gen": _gen(20, 32, 32, 8), "samples_shown": 8},
        "exercise_gen_steps": 20,
    },
    quick={
        "chain": {**_SOLVER, "dataset": "mnist", "scholars": 5, "hidden": [256, 256], "train_per_class": 300,
                  "test_per_class": 200, "first_epochs": 5, "solver_steps": 150, "gen": _gen(500, 256, 64),
                  "samples_shown": 10},
        # 3 tasks of 6 epochs: fewer, longer tasks than the paper's, so that no replay forgets measurably
        # within the budget (with 2 epochs per task fine-tuning barely forgets a permuted task)
        "permuted": {**_SOLVER, "dataset": "mnist", "tasks": 3, "hidden": [256, 256], "epochs": 6,
                     "train_per_class": 200, "test_per_class": 100, "modes": MODES, "gen": _gen(400, 256, 64)},
        "split": {**_SOLVER, "dataset": "mnist", "tasks": 5, "hidden": [256, 256], "epochs": 2,
                  "train_per_class": 500, "test_per_class": 200, "gen": _gen(150, 256, 64), "samples_shown": 10},
        # Exercise 4's extra run: the split with a cheaper generator
        "exercise_gen_steps": 100,
    },
    paper={
        "chain": {**_SOLVER, "dataset": "mnist", "scholars": 5, "hidden": [400, 400], "train_per_class": None,
                  "test_per_class": None, "first_epochs": 10, "solver_steps": 5000, "gen": _gen(10000, 400, 128),
                  "samples_shown": 10},
        "permuted": {**_SOLVER, "dataset": "mnist", "tasks": 5, "hidden": [400, 400], "epochs": 5,
                     "train_per_class": None, "test_per_class": None, "modes": MODES,
                     "gen": _gen(2000, 400, 128)},
        "split": {**_SOLVER, "dataset": "mnist", "tasks": 5, "hidden": [400, 400], "epochs": 5,
                  "train_per_class": None, "test_per_class": None, "gen": _gen(2000, 400, 128),
                  "samples_shown": 10},
        "exercise_gen_steps": 2000,
    },
)
