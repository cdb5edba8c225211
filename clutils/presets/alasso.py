"""Presets of the ALASSO chapter (Park et al., ICCV 2019).

* ``alasso-permuted-mnist``: Figures 4-7, K, L and Tables 1-2;
* ``alasso-loss-asymmetry``: Figure 2 and the asymmetry probe;
* ``alasso-split``: Figures 8-9 (split CIFAR-10/100, split Tiny ImageNet).

The ``paper`` profiles follow the paper (Section 5.2, Tables C-E) and the
authors' code (``dmpark04/alasso``): 2x2000 MLP, Adam 1e-3, batch 256, 20
epochs per task, 30 and 100 permuted tasks with the first one unpermuted, the
optimiser state kept across tasks, ALASSO with ``c = c' = 1``, ``a = 1.8``,
``a' = 1``, ``epsilon = 1e-6``, ``epsilon' = 0``, ``xi = 0.1``; SI with its
authors' ``c = 0.1``, ``xi = 0.1``; split CIFAR-10/100 and Tiny ImageNet with 60
epochs (batch 256 and 128).

The ``quick`` profile runs the whole chapter in minutes on a 2-core CPU:
Fashion-MNIST when MNIST is not on disk, 20 permuted tasks of 2,000 images, a
2x128 MLP and 5 epochs per task (40 Adam steps per task instead of 4,700).
Each method keeps the paper's own constants except ``xi``, SI's damping of
``Delta^2`` in the importance (Eq. 3 and 7), which has the units of a squared
parameter change: with about 100 times fewer steps the parameters travel about
10 times less (Adam's steps add up like a random walk), so ``xi`` is divided
by 100 for SI and ALASSO alike (0.1 -> 1e-3); with ``xi = 0.1`` neither
protects anything in so short a run. ALASSO's ``a`` is 2, the start of the flat
region of Table 1 (the authors' code uses 1.8). ``si_tuned_c`` is SI's best
``c`` of a sweep (0.1, 0.25, 0.5, 1) on this run: the notebook also runs SI
with it, to show how much of the gap to ALASSO is SI's constant.
"""
from ..strategies.recipes import recipe_of
from . import define

# The training and hyperparameters of every method come from its recipe (clutils.strategies.recipes).
_ADAM = recipe_of("alasso")


def _hp(profile: str, **changes) -> dict:
    """The recipes' hyperparameters of SI, ALASSO, EWC and MAS under ``profile``, with ``changes``."""
    out = {name: dict(recipe_of(name, profile).hp) for name in ("si", "alasso", "ewc", "mas")}
    for name, values in changes.items():
        out[name].update(values)
    return out


_PERMUTED_COMMON = {
    "optimizer": _ADAM.optimizer, "lr": _ADAM.lr, "batch_size": _ADAM.batch_size, "arch": "mlp",
    "first_unpermuted": True,  # the authors' code keeps task 1 as plain MNIST
    "reset_optimizer": _ADAM.reset_optimizer,  # the authors' code keeps Adam's state across tasks
    "early_tasks": [1, 2, 3],  # Figure 4: the tasks followed over time (1-based)
    "a_values": [0.8, 1.0, 2.0, 3.0, 4.0, 5.0],  # Table 1
    "methods_fig5": ["SGD", "SGD+dropout", "EWC", "MAS", "SI", "ALASSO", "single_task", "multi_task"],
    # Figure 5's ablation study, one ALASSO component at a time: "strength_from" takes c and xi
    # from that method's hyperparameters (SI's for SI's cumulative Omega), "hp" overrides ALASSO's.
    "ablations": {
        "asymmetry only": {"hp": {"omega": "si"}, "strength_from": "si"},
        "exact Omega only": {"hp": {"a": 1.0, "epsilon": 0.0}},
    },
    "no_decoupling": {"decouple": False},  # Figure 7
}

_PAPER_HP = _hp("paper")

define(
    "alasso-permuted-mnist",
    smoke={
        **_PERMUTED_COMMON, "tasks": 3, "epochs": 1, "hidden": [32], "batch_size": 64,
        "train_per_class": 20, "test_per_class": 10, "a_values": [0.8, 1.0, 2.0], "early_tasks": [1],
        "hp": _hp("smoke", ewc={"fisher_samples": 50}, mas={"samples": 50}),
        "si_tuned_c": 0.5, "tasks_long": None,
    },
    quick={
        **_PERMUTED_COMMON, "tasks": 20, "epochs": 5, "hidden": [128, 128],
        "train_per_class": 200, "test_per_class": 100,
        "hp": _hp("quick"),
        "si_tuned_c": 0.5,  # the best SI c of a sweep (0.1, 0.25, 0.5, 1) on this run, seed 0
        "tasks_long": None,  # the 100-task runs are the paper profile's
    },
    paper={
        **_PERMUTED_COMMON, "tasks": 30, "tasks_long": 100, "epochs": 20, "hidden": [2000, 2000],
        "train_per_class": None, "test_per_class": None, "hp": _PAPER_HP,
        "si_tuned_c": None,  # the paper tunes nothing beyond its own constants
        "early_tasks": [1, 2, 3, 4, 5],
        # 100 tasks: Figure 5 (right) without multi_task (joint training on 100 tasks is ~50x
        # the others' cost) and Table 1's second row
        "long_methods": ["EWC", "SI", "ALASSO", "single_task"],
    },
)

define(
    "alasso-loss-asymmetry",
    # Train the first (unpermuted) task, then probe single parameters.
    smoke={
        "tasks": 1, "epochs": 1, "hidden": [16], "batch_size": 64, "lr": 1e-3, "optimizer": "adam",
        "train_per_class": 20, "probe_samples": 100, "per_tensor": 5, "fractions": [0.5, 1.0],
        "grid": [2, 2], "span": 3.0, "span_points": 9,
    },
    # quick: 4,000 images for 60 epochs (940 Adam steps; the paper's 20 epochs of MNIST are 4,700)
    quick={
        "tasks": 1, "epochs": 60, "hidden": [128, 128], "batch_size": 256, "lr": 1e-3, "optimizer": "adam",
        "train_per_class": 400, "probe_samples": 1000, "per_tensor": 300, "fractions": [0.25, 0.5, 0.75, 1.0],
        "grid": [3, 4], "span": 3.0, "span_points": 25,
    },
    paper={
        "tasks": 1, "epochs": 20, "hidden": [2000, 2000], "batch_size": 256, "lr": 1e-3, "optimizer": "adam",
        "train_per_class": None, "probe_samples": 10000, "per_tensor": 500, "fractions": [0.25, 0.5, 0.75, 1.0],
        "grid": [3, 4], "span": 3.0, "span_points": 41,
    },
)

def _split_hp(profile: str) -> dict:
    """SI's and ALASSO's strength, ``a`` and ``xi`` from their recipes (the split runs set no others)."""
    keep = {"si": ("c", "xi"), "alasso": ("c", "a", "xi")}
    return {name: {k: recipe_of(name, profile).hp[k] for k in keys} for name, keys in keep.items()}


_SPLIT_COMMON = {"optimizer": _ADAM.optimizer, "lr": _ADAM.lr, "reset_optimizer": _ADAM.reset_optimizer,
                 "method_list": ["single_task", "SI", "ALASSO"]}

define(
    "alasso-split",
    smoke={
        "cifar": {**_SPLIT_COMMON, "kind": "cifar10-100", "tasks": 2, "classes_per_task": 3, "arch": "table-d",
                  "dataset": "fashion-mnist", "standin_tasks": 2, "epochs": 1, "batch_size": 32,
                  "train_per_class": 10, "test_per_class": 5, "snapshots": [1, 2]},
        "tiny": {**_SPLIT_COMMON, "kind": "tiny-imagenet", "tasks": 2, "classes_per_task": 6, "arch": "table-e",
                 "dataset": "fashion-mnist", "standin_tasks": 2, "size": 32, "epochs": 1, "batch_size": 32,
                 "train_per_class": 10, "test_per_class": 5, "snapshots": [1, 2]},
        "hp": _split_hp("smoke"),
    },
    quick={
        # The quick stand-ins, on every machine (CIFAR and Tiny ImageNet at 30 tasks are GPU work): split Fashion-MNIST, 5 tasks of 2 classes,
        # through Table D's and Table E's networks.
        "cifar": {**_SPLIT_COMMON, "kind": "cifar10-100", "tasks": 30, "classes_per_task": 3, "arch": "table-d",
                  "dataset": "fashion-mnist", "standin_tasks": 5, "epochs": 10, "batch_size": 256,
                  "train_per_class": 300, "test_per_class": 100, "snapshots": [1, 3, 5]},
        "tiny": {**_SPLIT_COMMON, "kind": "tiny-imagenet", "tasks": 30, "classes_per_task": 6, "arch": "table-e",
                 "dataset": "fashion-mnist", "standin_tasks": 5, "size": 32, "epochs": 3, "batch_size": 128,
                 "train_per_class": 150, "test_per_class": 100, "snapshots": [1, 3, 5]},
        "hp": _split_hp("quick"),
    },
    paper={
        "cifar": {**_SPLIT_COMMON, "kind": "cifar10-100", "tasks": 30, "classes_per_task": 3, "arch": "table-d",
                  "dataset": None, "epochs": 60, "batch_size": 256, "train_per_class": None,
                  "test_per_class": None, "snapshots": [5, 10, 15, 20, 25, 30]},
        "tiny": {**_SPLIT_COMMON, "kind": "tiny-imagenet", "tasks": 30, "classes_per_task": 6, "arch": "table-e",
                 "dataset": None, "size": None, "epochs": 60, "batch_size": 128, "train_per_class": None,
                 "test_per_class": None, "snapshots": [5, 10, 15, 20, 25, 30]},
        "hp": _split_hp("paper"),
    },
)
