"""Presets of the replay chapter (the KAIST AI602 lecture, section 4; Buzzega et al. 2020, Table 2).

* ``replay-class-il``: the core claims, class-incremental split Fashion-MNIST (5 tasks of 2
  classes): every method at buffer 200 on several seeds, and ER, DER, DER++ at the table's three
  buffer sizes (200, 500, 5120);
* ``replay-table``: the lecture's table (Class-IL and Task-IL on a split benchmark, Domain-IL on
  permuted and rotated ones) with every method of the paper's rows (``_TABLE_METHODS``; PNN runs
  once its strategy is registered), the three scenarios side by side, and the cost of each method;
* ``rotated-mnist``: the command line's defaults for the new named benchmark.

Training is the DER authors' for sequential MNIST (their code, ``mammoth``): plain SGD, batch 10,
a replay batch as large, one epoch per task, a maximal head, the MLP 784-100-100-10; lr 0.03 and
DER's alpha 0.2 (DER++: beta 1) from their Appendix at buffer 200 (:mod:`clutils.strategies.recipes`);
at other buffer sizes ER, DER and DER++ take the authors' values for that buffer (:data:`PER_BUFFER`:
alpha, beta, the replay batch and the learning rate).
The regularisation baselines keep their own recipes' strengths (not re-tuned for this run), except
online EWC's strength and SI's constants, changed so that SGD at lr 0.03 does not diverge.

``quick``: Fashion-MNIST stand-ins (600 training images a class: a stream of 6,000, so that a
buffer of 5,120 still does not hold all of it), 3 seeds for the core claims. ``paper``: the
paper's MNIST variants at full size (P-MNIST and R-MNIST with 20 tasks); S-CIFAR-10 and
S-Tiny-ImageNet with ResNet-18 are not run by this book (no ResNet-18 in ``clutils.models``),
their rows are the paper's numbers only.
"""
from ..strategies.recipes import recipe_of
from . import define

_SGD = recipe_of("der")

#: Display name -> (registry name, hyperparameters beyond the recipe's).
METHODS = {
    "JOINT": ("joint", {}),
    "SGD": ("naive", {}),
    # online EWC (Schwarz et al. 2018), gamma 1 as in the DER Appendix; lam 5 instead of the ALASSO
    # recipe's 100, which makes plain SGD at lr 0.03 diverge (lr * lam * F > 1 on the first layer)
    "oEWC": ("ewc", {"mode": "online", "gamma": 1.0, "lam": 5.0}),
    # SI with the DER authors' P-MNIST constants (c 0.5, xi 1.0): the ALASSO recipe's xi = 1e-3, tuned
    # for Adam, makes plain SGD at lr 0.03 diverge on the permuted and rotated tasks
    "SI": ("si", {"c": 0.5, "xi": 1.0}),
    "LwF": ("lwf", {}),
    "ER": ("er", {}),
    "GEM": ("gem", {}),
    "A-GEM": ("a-gem", {}),
    "DER": ("der", {}),
    "DER++": ("der++", {}),
    # iCaRL (Rebuffi et al. 2017): buffer_size is its total memory M, shared by the classes seen
    "iCaRL": ("icarl", {}),
    # PNN (Rusu et al. 2016; the expansion chapter): runs where its strategy is registered, in
    # Task-IL only (the scenario it declares); until then the table says it is not in clutils yet
    "PNN": ("pnn", {}),
}


def _hp(profile: str, fisher_samples: int) -> dict:
    out = {}
    for label, (name, extra) in METHODS.items():
        recipe = recipe_of(name, profile)
        hp = {**(dict(recipe.hp) if recipe is not None else {}), **extra}
        if name == "ewc":
            hp["fisher_samples"] = fisher_samples
        out[label] = {"strategy": name, "hp": hp}
    return out


#: The DER authors' per-buffer settings for sequential MNIST (their Appendix; ``best_args`` of
#: ``mammoth``): label -> buffer -> changes (``lr`` changes the training, the rest the strategy).
#: ``replay_batch`` is their ``minibatch_size``. Buffer 200 is the recipe itself.
PER_BUFFER = {
    "DER": {500: {"alpha": 1.0, "replay_batch": 128}, 5120: {"alpha": 0.5, "replay_batch": 128, "lr": 0.1}},
    "DER++": {200: {"replay_batch": 128}, 500: {"alpha": 1.0, "beta": 0.5},
              5120: {"alpha": 0.2, "beta": 0.5, "replay_batch": 64, "lr": 0.1}},
    "ER": {200: {"lr": 0.01}, 500: {"lr": 0.1}, 5120: {"lr": 0.1}},
}

_COMMON = {
    "optimizer": _SGD.optimizer, "lr": _SGD.lr, "batch_size": _SGD.batch_size, "reset_optimizer": True,
    "arch": "mlp", "hidden": [100, 100], "epochs": 1, "buffer": 200, "buffers": [200, 500, 5120],
    "per_buffer": PER_BUFFER,
    # PER_BUFFER holds the authors' sequential-MNIST values: they apply to the split benchmarks only
    # (clutils.experiments.replay.buffer_changes); permuted and rotated train every method with the recipe
    "per_buffer_on": "split-",
}
_CORE = ["SGD", "oEWC", "SI", "LwF", "ER", "A-GEM", "GEM", "iCaRL", "DER", "DER++", "JOINT"]

define(
    "replay-class-il",
    smoke={**_COMMON, "tasks": 5, "hidden": [32], "train_per_class": 30, "test_per_class": 10,
           "methods": _CORE, "curve": ["ER", "DER", "DER++"], "buffers": [20, 50, 200], "buffer": 20,
           "hp": _hp("smoke", 20)},
    quick={**_COMMON, "tasks": 5, "train_per_class": 600, "test_per_class": 100,
           "methods": _CORE, "curve": ["ER", "DER", "DER++"], "hp": _hp("quick", 200)},
    paper={**_COMMON, "tasks": 5, "train_per_class": None, "test_per_class": None,
           "methods": _CORE, "curve": ["ER", "DER", "DER++"], "hp": _hp("paper", 1000)},
)

#: The table's rows, in the paper's order; a method whose strategy is not registered (yet) is listed as
#: missing (``clutils.experiments.replay.missing``), one that does not declare a column's scenario is
#: left out of that column (PNN: Task-IL only; iCaRL: no Domain-IL, as in the paper).
_TABLE_METHODS = ["JOINT", "SGD", "oEWC", "SI", "LwF", "PNN", "ER", "GEM", "A-GEM", "iCaRL", "DER", "DER++"]

#: The methods whose time per step and memory the table notebook measures.
_COST_METHODS = ["SGD", "oEWC", "SI", "LwF", "ER", "A-GEM", "GEM", "iCaRL", "DER", "DER++"]

# quick: the paper's three buffer sizes. The split stream holds 2,000 images (200 a class), so
# that a buffer of 5,120 keeps all of it there (stated in the table's caption); the permuted and
# rotated streams hold 10,000 (5 tasks of 2,000), of which 5,120 keeps about half.
define(
    "replay-table",
    smoke={**_COMMON, "hidden": [32], "split_tasks": 5, "domain_tasks": 3, "train_per_class": 20,
           "test_per_class": 10, "methods": _TABLE_METHODS, "buffers": [20, 50],
           "scenario_methods": ["SGD", "oEWC", "SI", "LwF", "ER", "DER++"], "cost_steps": 20,
           "cost_methods": _COST_METHODS, "hp": _hp("smoke", 20)},
    quick={**_COMMON, "split_tasks": 5, "domain_tasks": 5, "train_per_class": 200, "test_per_class": 100,
           "methods": _TABLE_METHODS, "buffers": [200, 500, 5120],
           "scenario_methods": ["SGD", "oEWC", "SI", "LwF", "ER", "DER++"], "cost_steps": 100,
           "cost_methods": _COST_METHODS, "hp": _hp("quick", 200)},
    paper={**_COMMON, "split_tasks": 5, "domain_tasks": 20, "train_per_class": None, "test_per_class": None,
           "methods": _TABLE_METHODS, "buffers": [200, 500, 5120],
           "scenario_methods": ["SGD", "oEWC", "SI", "LwF", "ER", "GEM", "A-GEM", "DER", "DER++"],
           "cost_steps": 500, "cost_methods": _COST_METHODS, "hp": _hp("paper", 1000)},
)

_MLP = {"arch": "mlp", "optimizer": "sgd", "lr": 0.03, "batch_size": 10}
define(
    "rotated-mnist",
    smoke={**_MLP, "tasks": 3, "epochs": 1, "hidden": [64], "train_per_class": 50, "test_per_class": 20},
    quick={**_MLP, "tasks": 5, "epochs": 1, "hidden": [100, 100], "train_per_class": 300, "test_per_class": 100},
    paper={**_MLP, "tasks": 20, "epochs": 1, "hidden": [100, 100], "train_per_class": None, "test_per_class": None},
)
