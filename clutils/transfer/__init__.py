"""Transfer and multi-task learning: the opening chapter's building blocks (not continual).

One module per idea of the KAIST AI602 lecture "Transfer and Continual Learning", sections 1-3:

* :mod:`.training`: a plain supervised loop (tensors on the device, batches by index) that the
  four demonstrations share;
* :mod:`.data`: the chapter's source/target splits and domain shifts, built from one dataset;
* :mod:`.finetune`: the fine-tuning modes (from scratch, linear probe, body at a lower rate, full);
* :mod:`.dann`: the gradient-reversal layer and DANN (Ganin et al., JMLR 2016);
* :mod:`.distill`: the knowledge-distillation loss with temperature (Hinton et al., 2015);
* :mod:`.multitask`: a shared body with several heads, and the loss weightings: equal,
  uncertainty (Kendall et al., CVPR 2018) and GradNorm (Chen et al., ICML 2018).
"""
from .dann import DANN, GradientReversal, dann_lambda, grad_reverse, train_dann
from .distill import distillation_loss, kd_loss, soft_targets
from .finetune import MODES, Classifier, modes_for, prepare_finetune
from .multitask import EqualWeighting, GradNorm, MultiTaskNet, UncertaintyWeighting, train_multitask
from .training import accuracy, index_batches, train_classifier

__all__ = [
    "DANN", "GradientReversal", "dann_lambda", "grad_reverse", "train_dann",
    "distillation_loss", "kd_loss", "soft_targets",
    "MODES", "Classifier", "modes_for", "prepare_finetune",
    "EqualWeighting", "GradNorm", "MultiTaskNet", "UncertaintyWeighting", "train_multitask",
    "accuracy", "index_batches", "train_classifier",
]
