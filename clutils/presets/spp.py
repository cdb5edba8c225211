"""Presets of the SPP chapter (Peng et al., "Overcoming catastrophic forgetting by soft parameter pruning").

* ``spp-split``: Table 2 (split MNIST, 5 tasks), Figure 4 (the lambda sweep), Figure 6 (the
  importance distributions, measured on the split run), Figure 8 (importance against the change of
  each weight) and the core claims.
* ``spp-permuted``: Table 3 (10 permuted tasks; the quick profile 6), Figure 6 on the permuted
  benchmark and Figure 7 (6 permuted tasks), with the training of ``spp-split``.

``paper``: the paper's settings: MNIST, MLP 784-512-256 with dropout 0.5, plain SGD at lr 0.1 (the
best of its search over 0.1, 0.01, 0.001) decayed by 0.96 (not applied here: the loop keeps one
rate per task), 50 epochs per task (the authors' code), batch 256, SPP's importance over batches
of 100 and lam = 4 (Figure 4's best); every baseline with its recipe's strength. On one GPU the 9
methods x 5 split tasks x 50 epochs of 12,000 images plus the lambda sweep take
roughly half an hour (an estimate, not measured: the MLP step is about 1 ms; joint training
dominates).

``quick``: split *Fashion-MNIST* (MNIST's split is nearly solved by any method in the
task-incremental scenario), 200 training images per class, a 256-128 MLP with dropout 0.5, 5 epochs
of **Adam** at 1e-3, batch 64, for every method (the recipe of ``clutils.strategies.recipes``: with
the paper's plain SGD, SPP's heavy-tailed importance makes the penalty's step overshoot on the most
important weights, and the loss diverges, before lam protects the bulk of the weights). The
importance is smaller here than the paper's lambda grid presumes (a different dataset, size and
training: Omega is a gradient of a *sum* of entropies over a batch, squared, so its scale moves with
all of them), so the quick profile's lam values are the paper's grid times ``lam_scale`` (and its SPP
the paper's lam = 4 times it); the chapter says so wherever a lam
appears. ``smoke``: seconds.
"""
from ..strategies.recipes import recipe_of
from . import define

_SPP = recipe_of("spp")

#: Figure 4's grid of lambda values (the authors' code's ``Lamb_set``).
PAPER_LAMBDAS = [0.01, 0.1, 0.5, 1.0, 2.0, 4.0, 6.0, 8.0, 12.0]
#: Display name -> registry name of every method of Tables 2-3 (in the paper's order).
TABLE_METHODS = ["SGD-F", "fine-tuning", "EWC", "SI", "MAS", "LwF", "joint", "SPP"]


def _hp(profile: str, lam_scale: float) -> dict:
    """Each method's hyperparameters from its recipe; SPP's lam is the paper's 4 times ``lam_scale``."""
    out = {name: dict(recipe_of(name, profile).hp) for name in ("ewc", "si", "mas", "lwf")}
    out["spp"] = {**recipe_of("spp", profile).hp, "lam": 4.0 * lam_scale}
    return out


def _common(profile: str, lam_scale: float) -> dict:
    spp = recipe_of("spp", profile)
    return {"optimizer": spp.optimizer, "lr": spp.lr, "batch_size": spp.batch_size, "dropout": 0.5,
            "lam_scale": lam_scale, "lambdas": [lam_scale * v for v in PAPER_LAMBDAS],
            "methods": list(TABLE_METHODS), "hp": _hp(profile, lam_scale)}


QUICK_LAM_SCALE = 200.0  # the quick profile's lam = the paper's lam x 200 (see the module docstring)

define(
    "spp-split",
    smoke={**_common("smoke", QUICK_LAM_SCALE), "tasks": 5, "hidden": [32, 16], "epochs": 1, "batch_size": 32,
           "train_per_class": 20, "test_per_class": 10, "dataset": "digits", "lambdas_shown": [0.01, 0.5, 4.0]},
    quick={**_common("quick", QUICK_LAM_SCALE), "tasks": 5, "hidden": [256, 128], "epochs": 5,
           "train_per_class": 200, "test_per_class": 200, "dataset": "fashion-mnist", "lambdas_shown": None},
    paper={**_common("paper", 1.0), "tasks": 5, "hidden": [512, 256], "epochs": 50,
           "train_per_class": None, "test_per_class": None, "dataset": None, "lambdas_shown": None},
)

define(
    "spp-permuted",
    smoke={**_common("smoke", QUICK_LAM_SCALE), "tasks": 3, "fig7_tasks": 3, "hidden": [32, 16], "epochs": 1,
           "batch_size": 32, "train_per_class": 10, "test_per_class": 5, "dataset": "digits",
           "importance_samples": 100},
    # 6 tasks, not Table 3's 10: Figure 7's six tasks serve both, and the chapter says so in the claims.
    quick={**_common("quick", QUICK_LAM_SCALE), "tasks": 6, "fig7_tasks": 6, "hidden": [256, 128], "epochs": 3,
           "train_per_class": 150, "test_per_class": 100, "dataset": "fashion-mnist", "importance_samples": 1000},
    paper={**_common("paper", 1.0), "tasks": 10, "fig7_tasks": 6, "hidden": [512, 256], "epochs": 50,
           "train_per_class": None, "test_per_class": None, "dataset": None, "importance_samples": None},
)
