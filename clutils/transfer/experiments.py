"""The chapter's four demonstrations as functions of a preset (``clutils.presets.transfer``).

Each returns plain numbers (accuracies as fractions) and the trained models, so a notebook shows
them and a test can run them on a few images.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch

from ..data.datasets import load_dataset
from ..data.tensors import Dataset, TensorData
from . import data as tdata
from .dann import DANN, train_dann
from .distill import kd_loss
from .finetune import Classifier, modes_for, prepare_finetune
from .multitask import MultiTaskNet, make_weighting, train_multitask
from .training import accuracy, predict, train_classifier


def load(settings: dict, dataset: str | None, device) -> Dataset:
    """The preset's dataset (or ``dataset``), its tensors on ``device``."""
    d = load_dataset(dataset or settings["dataset"])
    d.train, d.test = d.train.to(device), d.test.to(device)
    return d


def in_features(d: Dataset) -> int:
    return int(torch.tensor(d.input_shape).prod())


def build_classifier(d: Dataset, settings: dict, n_classes: int) -> Classifier:
    """The fine-tuning demo's network: the preset's ``arch`` (an MLP unless it says ``conv``) and ``hidden``."""
    return Classifier(in_features(d), settings["hidden"], n_classes, arch=settings.get("arch", "mlp"),
                      image_shape=d.input_shape, conv_width=settings.get("conv_width", 16))


def mlp_settings(settings: dict) -> dict:
    """The preset's fine-tuning settings with the MLP body (``mlp_hidden``) in place of its own network."""
    return {**settings, "arch": "mlp", "hidden": settings["mlp_hidden"]}


# ---------------------------------------------------------------------------------- fine-tuning

@dataclass
class FinetuneRun:
    """Target test accuracy per (labels per class, mode) and the source head's accuracy after each run."""

    source_accuracy: float
    target: dict = field(default_factory=dict)  # (n, mode) -> target test accuracy
    source_after: dict = field(default_factory=dict)  # (n, mode) -> source test accuracy with the old head
    source_model: Classifier | None = None


def pretrain_source(d: Dataset, settings: dict, seed: int) -> tuple[Classifier, TensorData, TensorData]:
    """Train the source model on the first half of the classes; returns it and the source test set."""
    half = d.n_classes // 2
    src_train = tdata.per_class(tdata.class_split(d.train, list(range(half))), settings["source_per_class"], seed)
    src_test = tdata.class_split(d.test, list(range(half)))
    torch.manual_seed(seed)
    model = build_classifier(d, settings, half).to(d.train.x.device)
    train_classifier(model, src_train.x, src_train.y, steps=settings["source_steps"], lr=settings["lr"],
                     batch_size=settings["batch_size"], seed=seed)
    return model, src_train, src_test


def finetune_once(source: Classifier, train: TensorData, mode: str, settings: dict, seed: int) -> Classifier:
    """One fine-tuning run of ``mode`` on the target training set ``train``."""
    n_classes = int(train.y.max()) + 1
    model, groups = prepare_finetune(source, mode, n_classes, settings["lr"],
                                     body_lr_factor=settings["body_lr_factor"], seed=seed)
    train_classifier(model, train.x, train.y, steps=settings["target_steps"], lr=settings["lr"],
                     batch_size=settings["batch_size"], seed=seed, groups=groups)
    return model


def run_finetune(d: Dataset, settings: dict, seed: int, labels=None, modes=None) -> FinetuneRun:
    """Every mode at every number of target labels per class (the preset's ``labels`` by default).

    ``modes``: by default every mode the preset's body allows (:func:`~clutils.transfer.finetune.modes_for`).
    """
    modes = modes_for(settings.get("arch", "mlp")) if modes is None else modes
    source, _, src_test = pretrain_source(d, settings, seed)
    half = d.n_classes // 2
    tgt_classes = list(range(half, d.n_classes))
    tgt_all, tgt_test = tdata.class_split(d.train, tgt_classes), tdata.class_split(d.test, tgt_classes)
    run = FinetuneRun(source_accuracy=accuracy(source, src_test.x, src_test.y), source_model=source)
    for n in (settings["labels"] if labels is None else labels):
        train = tdata.per_class(tgt_all, n, seed)
        for mode in modes:
            model = finetune_once(source, train, mode, settings, seed)
            run.target[(n, mode)] = accuracy(model, tgt_test.x, tgt_test.y)
            old = copy.deepcopy(model)
            old.head = source.head  # the source task through the body as fine-tuned
            run.source_after[(n, mode)] = accuracy(old, src_test.x, src_test.y)
    return run


# ---------------------------------------------------------------------------------- domain adaptation

@dataclass
class DomainRun:
    source_only: float  # target test accuracy
    dann: float
    source_only_source: float  # source test accuracy
    dann_source: float
    history: dict
    models: dict


def domain_data(d: Dataset, settings: dict, seed: int):
    """Labelled source training data, unlabelled target training inputs, and both test sets."""
    src = tdata.per_class(d.train, settings["per_class"], seed)
    # the target's training inputs are other images than the source's (no pairs)
    tgt = tdata.per_class(d.train, settings["per_class"], seed + 1000)
    xt = tdata.shift_domain(tgt.x, settings["noise"], seed, settings["invert"])
    xt_test = tdata.shift_domain(d.test.x, settings["noise"], seed + 1, settings["invert"])
    return src, xt, TensorData(xt_test, d.test.y)


def run_domain(d: Dataset, settings: dict, seed: int) -> DomainRun:
    src, xt, tgt_test = domain_data(d, settings, seed)
    models, history, acc, acc_src = {}, {}, {}, {}
    for adapt in (False, True):
        torch.manual_seed(seed)
        model = DANN(in_features(d), settings["hidden"], d.n_classes, settings["domain_hidden"]).to(src.x.device)
        history[adapt] = train_dann(model, src.x, src.y, xt, steps=settings["steps"], lr=settings["lr"],
                                    batch_size=settings["batch_size"], seed=seed, adapt=adapt,
                                    gamma=settings["gamma"], max_lambda=settings["max_lambda"])
        models[adapt] = model
        acc[adapt] = accuracy(model, tgt_test.x, tgt_test.y)
        acc_src[adapt] = accuracy(model, d.test.x, d.test.y)
    return DomainRun(acc[False], acc[True], acc_src[False], acc_src[True], history, models)


# ---------------------------------------------------------------------------------- distillation

@dataclass
class DistillRun:
    teacher: float
    alone: float
    distilled: dict  # temperature -> student test accuracy
    teacher_model: Classifier | None = None


def run_distill(d: Dataset, settings: dict, seed: int, temperatures=None) -> DistillRun:
    train = tdata.per_class(d.train, settings["per_class"], seed)
    nin = in_features(d)
    torch.manual_seed(seed)
    teacher = Classifier(nin, settings["teacher_hidden"], d.n_classes).to(train.x.device)
    train_classifier(teacher, train.x, train.y, steps=settings["teacher_steps"], lr=settings["lr"],
                     batch_size=settings["batch_size"], seed=seed)
    teacher_logits = predict(teacher, train.x)

    def student(loss_fn=None) -> float:
        torch.manual_seed(seed + 1)
        model = Classifier(nin, settings["student_hidden"], d.n_classes).to(train.x.device)
        train_classifier(model, train.x, train.y, steps=settings["student_steps"], lr=settings["lr"],
                         batch_size=settings["batch_size"], seed=seed + 1, loss_fn=loss_fn)
        return accuracy(model, d.test.x, d.test.y)

    distilled = {}
    for T in (settings["temperatures"] if temperatures is None else temperatures):
        distilled[T] = student(lambda z, y, i, T=T: kd_loss(z, teacher_logits[i], y, T, settings["alpha"]))
    return DistillRun(accuracy(teacher, d.test.x, d.test.y), student(), distilled, teacher)


# ---------------------------------------------------------------------------------- multi-task

@dataclass
class MultitaskRun:
    accuracy: dict  # weighting -> [class accuracy, upper-body accuracy]
    history: dict  # weighting -> train_multitask's history


def run_multitask(d: Dataset, settings: dict, seed: int, weightings=None) -> MultitaskRun:
    train = tdata.per_class(d.train, settings["per_class"], seed)
    ys = [train.y, tdata.upper_body(train.y)]
    test_ys = [d.test.y, tdata.upper_body(d.test.y)]
    acc, history = {}, {}
    for name in (settings["weightings"] if weightings is None else weightings):
        torch.manual_seed(seed)
        model = MultiTaskNet(in_features(d), settings["hidden"], [d.n_classes, 2]).to(train.x.device)
        options = {"alpha": settings["gradnorm_alpha"], "lr": settings["gradnorm_lr"]} if name == "gradnorm" else {}
        weighting = make_weighting(name, 2, **options)
        history[name] = train_multitask(model, weighting, train.x, ys, steps=settings["steps"], lr=settings["lr"],
                                        batch_size=settings["batch_size"], seed=seed)
        with torch.no_grad():
            outs = model(d.test.x)
        acc[name] = [float((o.argmax(1) == y).float().mean()) for o, y in zip(outs, test_ys)]
    return MultitaskRun(acc, history)
