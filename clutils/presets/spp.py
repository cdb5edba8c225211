"""Presets of the SPP chapter (Peng et al., "Overcoming catastrophic forgetting by soft parameter pruning").

* ``spp-split``: Table 2 (split MNIST, 5 tasks), Figure 4 (the lambda sweep), Figure 6 (the
  importance distributions, measured on the split run), Figure 8 (importance against the change of
  each weight) and the core claims.
* ``spp-permuted``: Table 3 (10 permuted tasks; the quick profile 6), Figure 6 on the permuted
  benchmark and Figure 7 (6 permuted tasks), with the training of ``spp-split``. Paper profile on one GPU, an
  estimate (not measured): 8 methods x 10 tasks x 50 epochs of 60,000 images plus joint training
  on the union of the tasks (55 task-epochs of 60,000 per epoch) is about 1.6 million steps of batch
  256; at about 1 ms per step of this small MLP (launch-bound, not FLOP-bound) roughly half an
  hour, plus three 6-task runs for Figure 7.
* ``spp-vae``: the VAE stand-in of Figure 5 (part 3).
* ``spp-vision``: Figures 3, 9 and 10 (part 3): the paper's settings, run in the paper profile only
  (never run here: no GPU, no internet); their GPU-time estimate is computed from FLOPs in the notebook.

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
           "train_per_class": None, "test_per_class": None, "dataset": "mnist", "lambdas_shown": None},
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
           "train_per_class": None, "test_per_class": None, "dataset": "mnist", "importance_samples": None},
)

#: The VAE stand-in of Figure 5 (clutils.experiments.spp_vae): two groups of five classes, the MLP VAE of
#: clutils.generators with one encoder per group and a shared decoder; SPP's lam on the decoder for the
#: two importances the chapter compares (the decoder's output entropy, the paper's measure; its
#: reconstruction error).
_VAE = {"vae_batch_size": 128, "vae_lr": 1e-3, "importance_batch_size": 100, "lams": [100.0, 10000.0]}
define(
    "spp-vae",
    smoke={**_VAE, "dataset": "digits", "train_per_class": 30, "test_per_class": 10, "steps": 30, "vae_hidden": 64,
           "z_dim": 8},
    quick={**_VAE, "dataset": "fashion-mnist", "train_per_class": 200, "test_per_class": 100, "steps": 250,
           "vae_hidden": 400, "z_dim": 20},
    # The paper: a conv VAE on CelebA then anime faces at 96x96; no such data here. The paper profile runs the
    # same stand-in longer on all of Fashion-MNIST.
    paper={**_VAE, "dataset": "fashion-mnist", "train_per_class": None, "test_per_class": None, "steps": 5000,
           "vae_hidden": 400, "z_dim": 20},
)

#: Figures 3, 9 and 10 (clutils.experiments.spp_vision): the paper's settings in every profile; only the
#: paper profile runs them, the others show the paper's findings and the time estimate. Epochs and the
#: learning rate of Figures 3 and 10 are not stated: 50 epochs (the authors' MLP code), SGD lr 0.01, batch
#: 256 (the book's choice). Figure 3: 50,000 training images per dataset (STL-10 has 5,000 labelled ones,
#: all used; the paper does not say how it reached 50,000), every image RGB at 32 x 32. Figure 9
#: (supplementary section 6): SGD (section 4's optimiser) at lr 0.001 (its decay to 90 % every 100 epochs
#: falls at the end of each task: not applied), batch 128, 100 epochs per task, a 2048-unit layer with
#: dropout 0.5 before each task's classifier, random left-right flips (``flip``: their probability);
#: SPP's lam 4 (the paper searched 0.5..30 and gives no value).
_VISION = {
    "fig10": {"tasks": 20, "classes_per_task": 5, "train_per_task": 2500, "input_shape": [3, 32, 32], "epochs": 50,
              "batch_size": 256, "optimizer": "sgd", "lr": 0.01, "train_per_class": None, "test_per_class": None,
              "hp": {"spp": {"lam": 4.0, "batch_size": 100}}, "dataset": None},
    "fig3": {"tasks": 5, "classes_per_task": 10, "train_per_task": 50000, "test_per_task": None,
             "input_shape": [3, 32, 32], "epochs": 50, "batch_size": 256, "optimizer": "sgd", "lr": 0.01,
             "hp": {"spp": {"lam": 4.0, "batch_size": 100}}},
    "fig9": {"tasks": 4, "classes_per_task": 30, "class_groups": [30, 25, 25, 22], "train_per_task": 1600,
             "input_shape": [3, 224, 224], "epochs": 100, "batch_size": 128, "optimizer": "sgd", "lr": 0.001,
             "head_hidden": 2048, "dropout": 0.5, "flip": 0.5, "hp": {"spp": {"lam": 4.0, "batch_size": 100}}},
    "assumed_tflops": 20.0,  # sustained training throughput assumed for one GPU (fp32/TF32, small convnets)
    "fig10_methods": ["SGD-F", "fine-tuning", "EWC", "MAS", "LwF", "SPP", "joint"],
    "fig3_methods": ["SGD (one shared head)", "fine-tuning", "SGD-F", "EWC", "SI", "MAS", "LwF", "SPP", "joint"],
    "fig9_methods": ["SGD-F", "fine-tuning", "EWC", "MAS", "LwF", "SPP", "joint"],
}
#: The paper profile names each figure's datasets, so the book's preflight knows what it fetches.
_FIG3_SEQUENCE = [{"dataset": name} for name in ("mnist", "notmnist", "svhn", "stl10", "cifar10")]
define("spp-vision", smoke={**_VISION, "run": False}, quick={**_VISION, "run": False},
       paper={**_VISION, "run": True, "fig10": {**_VISION["fig10"], "dataset": "cifar100"},
              "fig3": {**_VISION["fig3"], "sequence": _FIG3_SEQUENCE},
              "fig9": {**_VISION["fig9"], "dataset": "caltech101"}})
