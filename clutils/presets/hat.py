"""Presets of the HAT chapter (Serra et al., ICML 2018; Dinu's report on HAT in ResNet-18).

* ``hat-forgetting``: the report's Figure 4 and its claims (forgetting ratio over the
  tasks; AlexNet and ResNet-18 with SGD and HAT, shared or per-task batch norm), and the
  numerical check of HAT's guarantee;
* ``hat-masks``: the report's Figure 1 (annealing and compensation), the masks (capacity
  per layer, overlap between tasks), the c and s_max sweep and HAT against EWC/SI/MAS.

``paper``: CIFAR-10 in 5 tasks of 2 classes then CIFAR-100 in 5 tasks of 20 (class order
from the seed), the AlexNet-like net and ResNet-18 as in the report, plain SGD lr 0.05,
batch 64, up to 200 epochs with the validation schedule of the authors' code (``schedule``:
10% held out, lr / 3 after 5 epochs without improvement, stop below 1e-4), on a GPU.

``quick``: a stand-in on the CPU: split Fashion-MNIST (5 tasks of 2 classes, 500 training
images per class, 10 epochs for the MLP and 5 for the ResNet), the gated MLP 784-256-256 and a narrow ResNet (widths 8 and 16, one block
per stage, stride-2 stem), a fixed number of epochs, the paper's HAT constants.
"""
from ..strategies.recipes import recipe_of
from . import define

_HAT = recipe_of("hat")
_TRAIN = {"optimizer": _HAT.optimizer, "lr": _HAT.lr, "batch_size": _HAT.batch_size, "hp": dict(_HAT.hp)}
# Figure 4's six curves: label -> (network, strategy, masked, batch norm). AlexNet-PNN is missing:
# progressive networks are not in clutils.
_ALEXNET = {"AlexNet-SGD": ("alexnet", "naive", False, "shared"), "AlexNet-HAT": ("alexnet", "hat", True, "shared")}
_RESNET = {"ResNet-SGD": ("resnet", "naive", False, "shared"), "ResNet-HAT": ("resnet", "hat", True, "shared"),
           "ResNet-HAT-BN": ("resnet", "hat", True, "task")}
_MLP = {"MLP-SGD": ("mlp", "naive", False, "shared"), "MLP-HAT": ("mlp", "hat", True, "shared")}
# Figure 4's third feed-forward curve, progressive networks (clutils/strategies/pnn.py), on the stand-in's
# MLP columns; the paper profile's AlexNet columns do not exist in clutils (PNN_MISSING says so there).
_PNN = {"MLP-PNN": ("pnn-mlp", "pnn", False, "shared")}
#: Shown in the figure and the table of a profile without a PNN curve (the paper profile's AlexNet-PNN).
PNN_MISSING = "AlexNet-PNN: missing (clutils' progressive networks have MLP columns only)"
# The authors' validation schedule (clutils.schedules): up to ``epochs`` epochs, lr / 3 after 5 epochs
# without a lower validation loss, stop below 1e-4, best weights back; 10% of each task's training data held out.
_SCHEDULE = {"lr_patience": 5, "lr_factor": 3.0, "lr_min": 1e-4, "validation_fraction": 0.1}

define(
    "hat-forgetting",
    smoke={**_TRAIN, "data": "split", "dataset": "digits", "tasks": 3, "train_per_class": 40, "test_per_class": 10,
           "epochs": 3, "joint_epochs": 3, "hidden": [32, 32], "resnet": {"widths": [4, 8], "blocks": [1, 1],
                                                                         "stem_stride": 1},
           "alexnet": None, "methods": {**_MLP, **_PNN, **_RESNET}},
    # The MLP trains 10 epochs per task (the ResNet 5): with 5, SGD forgot little on some seeds (its margin to
    # HAT +0.04 on seed 0) and the core claim was within the seed noise; 10 epochs, i.e. twice the steps on
    # every later task for both methods, is closer to the paper's long training (see the chapter).
    quick={**_TRAIN, "data": "split", "dataset": "fashion-mnist", "tasks": 5, "train_per_class": 500,
           "test_per_class": 100, "epochs": 5, "joint_epochs": 5, "epochs_by_arch": {"mlp": 10}, "hidden": [256, 256],
           "resnet": {"widths": [8, 16], "blocks": [1, 1], "stem_stride": 2},
           "alexnet": None, "methods": {**_MLP, **_PNN, **_RESNET}},
    paper={**_TRAIN, "data": "cifar10-100", "dataset": None, "tasks": 10, "train_per_class": None,
           "test_per_class": None, "epochs": 200, "joint_epochs": 200, "hidden": [2000, 2000],
           "resnet": {"widths": [64, 128, 256, 512], "blocks": [2, 2, 2, 2], "stem_stride": 1},
           "alexnet": {"width": 1.0, "fc": 2048}, "methods": {**_ALEXNET, **_RESNET}, "schedule": _SCHEDULE},
)

define(
    "hat-masks",
    smoke={**_TRAIN, "dataset": "digits", "tasks": 3, "train_per_class": 20, "test_per_class": 10, "epochs": 2,
           "hidden": [32, 32], "c_values": [0.1, 0.75], "s_max_values": [25.0, 400.0],
           "compare": ["SGD", "HAT", "EWC", "separate"],
           "other_hp": {"ewc": {"lam": 100.0, "fisher_samples": 50}, "si": {"c": 0.1, "xi": 1e-3},
                        "mas": {"lam": 1.0, "samples": 50}}},
    quick={**_TRAIN, "dataset": "fashion-mnist", "tasks": 5, "train_per_class": 200, "test_per_class": 100,
           "epochs": 8, "hidden": [256, 256], "c_values": [0.01, 0.1, 0.75, 2.5, 10.0],
           "s_max_values": [10.0, 50.0, 400.0, 1000.0],
           "compare": ["SGD", "HAT", "EWC", "SI", "MAS", "separate"],
           "other_hp": {"ewc": {"lam": 100.0, "fisher_samples": 200}, "si": {"c": 0.1, "xi": 1e-3},
                        "mas": {"lam": 1.0, "samples": 200}}},
    paper={**_TRAIN, "dataset": None, "tasks": 10, "train_per_class": None, "test_per_class": None, "epochs": 200,
           "hidden": [2000, 2000], "c_values": [0.01, 0.1, 0.25, 0.75, 1.5, 2.5, 5.0, 10.0],
           "s_max_values": [10.0, 25.0, 50.0, 100.0, 200.0, 400.0, 800.0],
           "compare": ["SGD", "HAT", "EWC", "SI", "MAS", "separate"],
           "other_hp": {"ewc": {"lam": 100.0, "fisher_samples": 1000}, "si": {"c": 0.1, "xi": 0.1},
                        "mas": {"lam": 1.0, "samples": 1000}}},
)
