"""Presets of the opening chapter, "Transfer and multi-task learning" (KAIST AI602 lecture, sections 1-3).

* ``transfer-finetune``: a source network pre-trained on the first half of the classes, transferred
  to the second half with ``labels`` images per class, in the four modes of
  :mod:`clutils.transfer.finetune`. The network is the small conv net (``arch="conv"``: SI's
  CIFAR net with ``conv_width`` channels and one ``hidden`` layer); the chapter also runs the
  comparison at the fewest labels with an MLP of ``mlp_hidden`` units, where pre-training on
  five classes does not help (the chapter shows why);
* ``transfer-domain``: DANN against source-only training, source the clean images, target the
  same images under heavy Gaussian noise (standard deviation 2.5 on standardised pixels) (:func:`clutils.transfer.data.shift_domain`);
* ``transfer-distill``: a wide teacher MLP and a narrow student distilled at each temperature;
* ``transfer-multitask``: two heads (the ten classes; upper-body garment or not) on one body,
  with equal, uncertainty and GradNorm weighting.

``quick``: Fashion-MNIST on the CPU, a few hundred to a thousand steps of Adam per run; "all
labels" is replaced by 1000 per class (the whole chapter in a few minutes). ``smoke``: seconds.
``paper``: the lecture's experiments need ImageNet-pre-trained ResNets (fine-tuning), MNIST-M or
SVHN (DANN), the 784-1200-1200 MLP on all of MNIST (distillation) and NYUv2 (multi-task); none of
these is offline here, so ``paper`` runs the same stand-ins at full size: every Fashion-MNIST
image, the lecture's MLP sizes (1200-1200 teacher, 800-800 student) and ten times the steps
(an estimate: about 10 minutes on one GPU, not measured).
"""
from . import define

_ADAM = {"optimizer": "adam", "lr": 1e-3, "batch_size": 64, "dataset": "fashion-mnist"}

define(
    "transfer-finetune",
    smoke={**_ADAM, "arch": "conv", "conv_width": 4, "hidden": [16], "mlp_hidden": [64, 32], "source_per_class": 50,
           "source_steps": 40, "labels": [10, 30], "target_steps": 30, "body_lr_factor": 0.1},
    quick={**_ADAM, "arch": "conv", "conv_width": 16, "hidden": [128], "mlp_hidden": [256, 128],
           "source_per_class": 1000, "source_steps": 1000, "labels": [10, 100, 1000], "target_steps": 300,
           "body_lr_factor": 0.1},
    paper={**_ADAM, "arch": "conv", "conv_width": 32, "hidden": [512], "mlp_hidden": [256, 128],
           "source_per_class": None, "source_steps": 15000, "labels": [10, 100, None], "target_steps": 5000,
           "body_lr_factor": 0.1},
)

define(
    "transfer-domain",
    smoke={**_ADAM, "hidden": [64, 32], "domain_hidden": 32, "per_class": 30, "steps": 40, "noise": 2.5, "invert": False,
           "gamma": 10.0, "max_lambda": 1.0},
    quick={**_ADAM, "hidden": [256, 128], "domain_hidden": 64, "per_class": 300, "steps": 600, "noise": 2.5, "invert": False,
           "gamma": 10.0, "max_lambda": 1.0},
    paper={**_ADAM, "hidden": [256, 128], "domain_hidden": 64, "per_class": None, "steps": 10000, "noise": 2.5, "invert": False,
           "gamma": 10.0, "max_lambda": 1.0},
)

define(
    "transfer-distill",
    smoke={**_ADAM, "teacher_hidden": [64, 64], "student_hidden": [8], "per_class": 30, "teacher_steps": 40,
           "student_steps": 40, "temperatures": [1.0, 4.0, 20.0], "alpha": 0.9},
    quick={**_ADAM, "teacher_hidden": [512, 512], "student_hidden": [16], "per_class": 300, "teacher_steps": 1000,
           "student_steps": 600, "temperatures": [1.0, 4.0, 20.0], "alpha": 0.9},
    paper={**_ADAM, "teacher_hidden": [1200, 1200], "student_hidden": [800, 800], "per_class": None,
           "teacher_steps": 20000, "student_steps": 20000, "temperatures": [1.0, 4.0, 20.0], "alpha": 0.9},
)

define(
    "transfer-multitask",
    smoke={**_ADAM, "hidden": [64, 32], "per_class": 30, "steps": 40, "weightings": ["equal", "uncertainty", "gradnorm"],
           "gradnorm_alpha": 1.5, "gradnorm_lr": 0.025},
    quick={**_ADAM, "hidden": [256, 128], "per_class": 300, "steps": 600,
           "weightings": ["equal", "uncertainty", "gradnorm"], "gradnorm_alpha": 1.5, "gradnorm_lr": 0.025},
    paper={**_ADAM, "hidden": [256, 128], "per_class": None, "steps": 10000,
           "weightings": ["equal", "uncertainty", "gradnorm"], "gradnorm_alpha": 1.5, "gradnorm_lr": 0.025},
)
