"""Fine-tuning a pre-trained network on a new task: five modes (lecture, section 2, "Fine-tuning").

A source model ``head(body(x))`` pre-trained on the source task is reused for a target task with
other classes: the body is kept, the output layer is new (``target_classes`` outputs). The body is
an MLP on the pixels or a small conv net (:class:`clutils.models.CifarNet`); the lecture's claims
are about convolutional features, and the chapter shows both. The modes differ in what the target
data may change:

* ``scratch``: the body is re-initialised (no transfer; the reference);
* ``linear_probe``: the body is frozen (``requires_grad=False``, outside the optimizer): only the
  new head learns, :math:`\\min_{W_h} L(W_h\\, \\phi_{\\theta_S}(x), y)`, and the body stays
  bit-identical to the source's;
* ``frozen_conv`` (conv body only): the convolutions are frozen, the fully connected layer and the
  new head learn: the lecture's advice to "freeze convolutional layers" taken literally;
* ``lower_lr``: every layer learns, the body at ``body_lr_factor`` times the head's rate;
* ``full``: every layer learns at the same rate, from the source weights.

The lecture: "to avoid overfitting, one can often *freeze* convolutional layers for small target
datasets"; with plenty of target data the frozen features cost accuracy. In a continual-learning
reading, ``full`` is the naive baseline that forgets: nothing keeps the body good for the source
task, which the chapter measures through the source head.
"""
from __future__ import annotations

import copy
from typing import Sequence

import torch
from torch import nn

from ..models import MLP, CifarNet

MODES = ("scratch", "linear_probe", "frozen_conv", "lower_lr", "full")
ARCHS = ("mlp", "conv")


class Classifier(nn.Module):
    """``head(body(x))``: a body and one linear output layer.

    ``arch="mlp"``: a :class:`clutils.models.MLP` with the ``hidden`` widths. ``arch="conv"``: the
    small conv net of :class:`clutils.models.CifarNet` (four 3x3 convolutions of ``conv_width`` and
    twice that many channels, two max-pools, then one fully connected layer of ``hidden[0]`` units),
    which needs the images' ``image_shape`` (channels, height, width).
    """

    def __init__(self, in_features: int, hidden: Sequence[int], n_classes: int, *, arch: str = "mlp",
                 image_shape: Sequence[int] | None = None, conv_width: int = 16):
        super().__init__()
        if arch == "mlp":
            self.body = MLP(in_features, tuple(hidden))
        elif arch == "conv":
            if image_shape is None or len(image_shape) != 3:
                raise ValueError(f"a conv body needs image_shape=(channels, height, width), got {image_shape}")
            if len(hidden) != 1:
                raise ValueError(f"a conv body has one fully connected layer: hidden=[units], got {list(hidden)}")
            channels, height, width = (int(v) for v in image_shape)
            if height != width or channels * height * width != in_features:
                raise ValueError(f"image_shape {tuple(image_shape)} must be square and hold {in_features} inputs")
            if height < 10:  # two unpadded convolutions and two poolings leave nothing of a smaller image
                raise ValueError(f"images of {height}x{width} are too small for the conv body (10x10 at least); "
                                 "use arch='mlp'")
            self.body = CifarNet(channels, height, width=conv_width, fc=int(hidden[0]), dropout=False)
        else:
            raise ValueError(f"unknown body {arch!r}; choose one of: {', '.join(ARCHS)}")
        self.head = nn.Linear(self.body.out_features, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def modes_for(arch: str) -> tuple[str, ...]:
    """The fine-tuning modes a body of ``arch`` allows (``frozen_conv`` needs convolutions)."""
    if arch not in ARCHS:
        raise ValueError(f"unknown body {arch!r}; choose one of: {', '.join(ARCHS)}")
    return MODES if arch == "conv" else tuple(m for m in MODES if m != "frozen_conv")


def prepare_finetune(source: Classifier, mode: str, target_classes: int, lr: float, *,
                     body_lr_factor: float = 0.1, seed: int = 0) -> tuple[Classifier, list[dict]]:
    """A copy of ``source`` with a new head for ``target_classes``, and the optimizer's groups for ``mode``.

    The new head (and, for ``scratch``, the body) is initialised from ``seed``, so every mode of
    one seed starts from the same head. ``source`` itself is never modified.
    """
    if mode not in MODES:
        raise ValueError(f"unknown fine-tuning mode {mode!r}; choose one of: {', '.join(MODES)}")
    if not 0 < body_lr_factor <= 1:
        raise ValueError(f"body_lr_factor must be in (0, 1], got {body_lr_factor}")
    model = copy.deepcopy(source)
    torch.manual_seed(seed)
    model.head = nn.Linear(source.head.in_features, target_classes).to(source.head.weight.device)
    if mode == "scratch":
        for layer in model.body.modules():
            if isinstance(layer, (nn.Linear, nn.Conv2d)):
                layer.reset_parameters()
    if mode == "frozen_conv":
        if not isinstance(model.body, CifarNet):
            raise ValueError("mode 'frozen_conv' freezes convolutions: it needs the conv body (arch='conv')")
        for p in model.body.layers.parameters():
            p.requires_grad_(False)
        return model, [{"params": list(model.body.fc.parameters()) + list(model.head.parameters()), "lr": lr}]
    if mode == "linear_probe":
        for p in model.body.parameters():
            p.requires_grad_(False)
        return model, [{"params": list(model.head.parameters()), "lr": lr}]
    body_lr = lr * body_lr_factor if mode == "lower_lr" else lr
    return model, [{"params": list(model.body.parameters()), "lr": body_lr},
                   {"params": list(model.head.parameters()), "lr": lr}]
