"""Presets of the expansion chapter: progressive networks and the comparison of the three families.

* ``expansion-pnn``: PNN on task-incremental split Fashion-MNIST (BWT exactly 0, parameters against
  the number of tasks, forward transfer against one fresh network per task) and a small version of
  the paper's transfer-score table on Fashion-MNIST variants standing in for "Pong soup", with MLP
  columns and with convolutional ones (``soup["conv"]``: the channels of the conv layers and the dense
  width of clutils.models_pnn.PNNConv, the paper's kind of column);
* ``expansion-families``: regularisation (EWC, SI, ALASSO, SPP), replay (ER, DER++) and expansion
  (PNN, HAT) on the same split Fashion-MNIST, task- and (where a method can) class-incremental.

``quick`` runs on one CPU thread; ``paper`` uses the whole of Fashion-MNIST and wider columns (the
PNN paper's experiments are reinforcement learning on Atari, Labyrinth and Pong variants, which
``clutils`` does not reproduce: the supervised stand-in is the same in every profile).
"""
from . import define

#: The transfer experiment's tasks: Fashion-MNIST variants standing in for "Pong soup"
#: (clutils.experiments.expansion.VARIANTS says what each does).
_SOUP = ["original", "flipped", "noisy", "zoomed", "inverted"]

define(
    "expansion-pnn",
    smoke={"dataset": "digits", "tasks": 3, "classes_per_task": 2, "train_per_class": 30, "test_per_class": 10,
           "epochs": 2, "hidden": [16, 16], "optimizer": "adam", "lr": 1e-3, "batch_size": 32,
           "max_columns": 8,
           "soup": {"variants": _SOUP[:3], "source": "original", "source_per_class": 30, "target_per_class": 5,
                    "test_per_class": 10, "source_epochs": 3, "target_epochs": 3, "noise": 0.5,
                    "three_column": False, "conv": {"channels": [4, 8], "fc": 16}}},
    quick={"dataset": "fashion-mnist", "tasks": 5, "classes_per_task": 2, "train_per_class": 200,
           "test_per_class": 100, "epochs": 3, "hidden": [100, 100], "optimizer": "adam", "lr": 1e-3,
           "batch_size": 64, "max_columns": 10,
           "soup": {"variants": _SOUP, "source": "original", "source_per_class": 200, "target_per_class": 20,
                    "test_per_class": 50, "source_epochs": 3, "target_epochs": 6, "noise": 0.5,
                    "three_column": True, "conv": {"channels": [8, 16], "fc": 64}}},
    paper={"dataset": "fashion-mnist", "tasks": 5, "classes_per_task": 2, "train_per_class": None,
           "test_per_class": None, "epochs": 10, "hidden": [256, 256], "optimizer": "adam", "lr": 1e-3,
           "batch_size": 64, "max_columns": 10,
           "soup": {"variants": _SOUP, "source": "original", "source_per_class": 1000, "target_per_class": 50,
                    "test_per_class": None, "source_epochs": 10, "target_epochs": 20, "noise": 0.5,
                    "three_column": True, "conv": {"channels": [16, 32], "fc": 128}}},
)

#: The comparison: label -> (family, strategy, network). Each method trains with its chapter's recipe
#: (clutils.strategies.recipes: optimiser, learning rate, hyperparameters) for the same epochs and, with the
#: preset's ``batch_size``, the same number of steps.
FAMILY_METHODS = {
    "EWC": ("regularisation", "ewc", "mlp"),
    "SI": ("regularisation", "si", "mlp"),
    "ALASSO": ("regularisation", "alasso", "mlp"),
    "SPP": ("regularisation", "spp", "mlp"),
    "ER": ("replay", "er", "mlp"),
    "DER++": ("replay", "der++", "mlp"),
    "PNN": ("expansion", "pnn", "pnn-mlp"),
    "DEN": ("expansion", "den", "den-mlp"),
    "HAT": ("expansion", "hat", "hat-mlp"),
}

define(
    "expansion-families",
    smoke={"dataset": "digits", "tasks": 3, "classes_per_task": 2, "train_per_class": 30, "test_per_class": 10,
           "epochs": 2, "hidden": [32, 32], "batch_size": 16, "methods": dict(FAMILY_METHODS), "class_il": True,
           "hp": {"ewc": {"fisher_samples": 30}, "er": {"buffer_size": 30}, "der++": {"buffer_size": 30}}},
    quick={"dataset": "fashion-mnist", "tasks": 5, "classes_per_task": 2, "train_per_class": 200,
           "test_per_class": 100, "epochs": 3, "hidden": [100, 100], "batch_size": 32, "methods": dict(FAMILY_METHODS),
           "class_il": True, "hp": {}},
    paper={"dataset": "fashion-mnist", "tasks": 5, "classes_per_task": 2, "train_per_class": None,
           "test_per_class": None, "epochs": 10, "hidden": [256, 256], "batch_size": 32, "methods": dict(FAMILY_METHODS),
           "class_il": True, "hp": {}},
)
