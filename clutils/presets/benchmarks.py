"""Per-benchmark defaults of the command line (``python -m clutils run``).

Keys: ``tasks``, ``epochs``, ``batch_size``, ``lr``, ``optimizer``, ``arch``,
``hidden``, ``train_per_class``/``test_per_class`` (None: all samples).
The paper profiles follow SI/ALASSO (permuted MNIST: 2x2000 MLP, Adam 1e-3,
batch 256, 20 epochs), SI (split MNIST: 2x256 MLP, 10 epochs per task) and
ALASSO Table D (split CIFAR-10/100: 60 epochs).
"""
from . import define

_MLP = {"arch": "mlp", "optimizer": "adam", "lr": 1e-3, "batch_size": 256}
_CONV = {"arch": "cifarnet", "optimizer": "adam", "lr": 1e-3, "batch_size": 256, "hidden": None}

define(
    "permuted-mnist",
    smoke={**_MLP, "tasks": 3, "epochs": 1, "hidden": [64], "train_per_class": 50, "test_per_class": 20},
    quick={**_MLP, "tasks": 5, "epochs": 2, "hidden": [256, 256], "train_per_class": 1000, "test_per_class": 300},
    paper={**_MLP, "tasks": 10, "epochs": 20, "hidden": [2000, 2000], "train_per_class": None, "test_per_class": None},
)
define(
    "split-mnist",
    smoke={**_MLP, "tasks": 5, "epochs": 1, "hidden": [64], "train_per_class": 50, "test_per_class": 20},
    quick={**_MLP, "tasks": 5, "epochs": 2, "hidden": [256, 256], "train_per_class": 1000, "test_per_class": 300},
    paper={**_MLP, "tasks": 5, "epochs": 10, "hidden": [256, 256], "train_per_class": None, "test_per_class": None},
)
define(
    "split-cifar10-100",
    smoke={**_CONV, "tasks": 2, "epochs": 1, "train_per_class": 10, "test_per_class": 5},
    quick={**_CONV, "tasks": 6, "epochs": 5, "train_per_class": 100, "test_per_class": 50},
    paper={**_CONV, "tasks": 6, "epochs": 60, "train_per_class": None, "test_per_class": None},
)
define(
    "icifar100",
    smoke={**_CONV, "tasks": 2, "epochs": 1, "train_per_class": 10, "test_per_class": 5},
    quick={**_CONV, "tasks": 10, "epochs": 5, "train_per_class": 100, "test_per_class": 50},
    paper={**_CONV, "tasks": 10, "epochs": 60, "train_per_class": None, "test_per_class": None},
)
define(
    "core50-nc",
    smoke={**_CONV, "tasks": 9, "epochs": 1, "train_per_class": 10, "test_per_class": 5},
    quick={**_CONV, "tasks": 9, "epochs": 4, "train_per_class": 100, "test_per_class": 50},
    paper={**_CONV, "tasks": 9, "epochs": 4, "train_per_class": None, "test_per_class": None},
)
