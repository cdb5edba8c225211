"""Chapter helpers for HAT (Serra et al., ICML 2018; Dinu's report on HAT in ResNet-18).

The notebooks ``notebooks/hat_*.ipynb`` read a preset (``clutils.presets.get("hat-...",
profile)``) and call these helpers; the strategy is :mod:`clutils.strategies.hat`, the
networks :mod:`clutils.models_hat`.

* :func:`benchmark`: the split stand-in (or the paper's CIFAR-10/100 sequence of 10 tasks);
* :func:`run_method`: one labelled network/strategy pair (``"ResNet-HAT-BN"`` ...) on a
  benchmark, recording the test loss and the logits of every task after every task
  (:class:`Recorder`);
* :func:`joint_reference` (cached) and :func:`random_accuracies`: the two references of
  the forgetting ratio (:func:`clutils.metrics.forgetting_ratio`);
* :func:`output_drift`: how much a task's outputs moved after later tasks.
"""
from __future__ import annotations

import time
from typing import Any, Mapping

import numpy as np
import torch
import torch.nn.functional as F

from .. import metrics
from ..data import benchmarks as bm
from ..data.datasets import load_dataset
from ..data.named import _shrink, make_benchmark
from ..models_hat import build_hat_model
from ..result import Result
from ..strategies import make
from ..train import TrainConfig, fit

#: The report's claims (Section 4), for the scorecard.
PAPER = {
    "figure4": "AlexNet-HAT forgets least; ResNet-HAT-BN far better than ResNet-SGD; "
               "ResNet-HAT with shared BN worse than ResNet-SGD",
    "old_loss": "losses of previously trained tasks: 'exploding 35-digit numbers' (shared BN)",
    "bn_layers": 200,  # 20 BN layers x 10 tasks in ResNet-18
}

_JOINT_CACHE: dict[Any, np.ndarray] = {}


def benchmark(settings: Mapping[str, Any], dataset: str | None = None, seed: int = 0,
              root=None) -> bm.Benchmark:
    """The preset's task-incremental benchmark.

    ``data="split"``: ``dataset`` (or the preset's) split into ``tasks`` tasks in class order;
    ``data="cifar10-100"``: the report's sequence, CIFAR-10 in 5 tasks of 2 classes then
    CIFAR-100 in 5 tasks of 20, each class order drawn from ``seed``.
    """
    if settings.get("data", "split") == "split" or dataset is not None:
        if settings.get("class_order") == "seed":  # as the report's CIFAR order; else 0/1, 2/3, ...
            data = _shrink(load_dataset(dataset or settings["dataset"], root), settings["train_per_class"],
                           settings["test_per_class"], None, seed)
            split = bm.split(data, settings["tasks"], "task", seed=seed)
            split.name = f"split-mnist on {data.name}, class order from seed {seed}"
            return split
        return make_benchmark("split-mnist", dataset=dataset or settings["dataset"], n_tasks=settings["tasks"],
                              classes_per_task=settings.get("classes_per_task", 2),
                              train_per_class=settings["train_per_class"], test_per_class=settings["test_per_class"],
                              seed=seed, root=root)
    return _cifar_sequence(load_dataset("cifar10", root), load_dataset("cifar100", root), seed)


def _cifar_sequence(cifar10, cifar100, seed: int) -> bm.Benchmark:
    first = bm.split(cifar10, 5, "task", seed=seed)
    second = bm.split(cifar100, 5, "task", seed=seed)
    tasks = [bm.Task(i, t.train, t.test, t.classes if i < 5 else tuple(10 + c for c in t.classes), t.name)
             for i, t in enumerate(first.tasks + second.tasks)]
    return bm.Benchmark("cifar10-100 (5 + 5 tasks)", "task", tasks, 110, first.input_shape, "cifar10+cifar100",
                        first.class_names + second.class_names, {"seed": seed})


def network(benchmark_: bm.Benchmark, settings: Mapping[str, Any], arch: str, masked: bool, bn: str = "shared",
            seed: int = 0):
    """The preset's MLP, AlexNet-like net or ResNet, gated or plain (same seed: same weights);
    ``pnn-mlp``: progressive MLP columns of the preset's widths (when clutils has them)."""
    if arch == "pnn-mlp":
        from ..models import build_model
        return build_model(benchmark_, arch, hidden=tuple(settings["hidden"]), seed=seed)
    if arch == "mlp":
        return build_hat_model(benchmark_, "mlp", masked=masked, hidden=tuple(settings["hidden"]), seed=seed)
    if arch == "alexnet":
        return build_hat_model(benchmark_, "alexnet", masked=masked, seed=seed, **settings["alexnet"])
    r = settings["resnet"]
    return build_hat_model(benchmark_, "resnet", masked=masked, bn=bn, widths=tuple(r["widths"]),
                           blocks=tuple(r["blocks"]), stem_stride=r.get("stem_stride", 1), seed=seed)


def epochs_of(settings: Mapping[str, Any], arch: str | None = None, joint: bool = False) -> int:
    """The preset's epochs per task for network ``arch``: ``epochs_by_arch[arch]`` if given, else
    ``joint_epochs`` (joint references) or ``epochs``."""
    by_arch = (settings.get("epochs_by_arch") or {}).get(reference_arch(arch) if arch else None)
    return by_arch or (settings.get("joint_epochs") if joint else None) or settings["epochs"]


def train_config(settings: Mapping[str, Any], seed: int = 0, epochs: int | None = None,
                 arch: str | None = None) -> TrainConfig:
    """The recipe's plain SGD (no momentum, no weight decay) with the preset's epochs (for ``arch``) and,
    with a ``schedule`` (the paper profile), the authors' validation schedule (:mod:`clutils.schedules`)."""
    return TrainConfig(epochs=epochs or epochs_of(settings, arch), batch_size=settings["batch_size"], lr=settings["lr"],
                       optimizer=settings["optimizer"], seed=seed, progress=False, **(settings.get("schedule") or {}))


class Recorder:
    """Records, before training and after every task, each task's test loss and logits.

    ``losses[k][j]``: mean cross-entropy on task j's test set after task k (k = 0 is before
    training); ``logits[k][j]``: the logits themselves (the model in eval mode after the strategy's
    ``before_eval``: a HAT network at ``s_max``). It wraps the strategy's ``setup`` and ``after_task``
    (not ``before_eval``, which the validation schedule also calls after every epoch).
    """

    def __init__(self, strategy, benchmark_: bm.Benchmark):
        self.losses: list[list[float]] = []
        self.logits: list[list[torch.Tensor]] = []
        self.benchmark = benchmark_
        self.strategy = strategy
        setup, after_task = strategy.setup, strategy.after_task

        def wrapped_setup(model, benchmark__):
            setup(model, benchmark__)
            self.record(model)

        def wrapped_after_task(model, task, data):
            after_task(model, task, data)
            self.record(model)

        strategy.setup, strategy.after_task = wrapped_setup, wrapped_after_task

    @torch.no_grad()
    def record(self, model) -> None:
        was_training = model.training
        model.eval()
        self.strategy.before_eval(model)
        device = next(model.parameters()).device
        row, outs = [], []
        for task in self.benchmark.tasks:
            out = model(task.test.x.to(device), task.index)
            outs.append(out.detach().cpu().clone())
            row.append(F.cross_entropy(out, task.test.y.to(device)).item())
        self.strategy.after_eval(model)
        model.train(was_training)
        self.losses.append(row)
        self.logits.append(outs)


def run_method(label: str, benchmark_: bm.Benchmark, settings: Mapping[str, Any], *, seed: int = 0,
               device="cpu", hp: Mapping[str, Any] | None = None) -> tuple[Result, Recorder, Any]:
    """Train a fresh network of method ``label`` (a key of ``settings["methods"]``).

    Returns the result, the :class:`Recorder` and the strategy (HAT's masks are in it).
    """
    arch, name, masked, bn = settings["methods"][label]
    model = network(benchmark_, settings, arch, masked, bn, seed)
    strategy = make(name, **({**settings["hp"], **(hp or {})} if name == "hat" else {}))
    recorder = Recorder(strategy, benchmark_)
    started = time.perf_counter()
    result = fit(model, benchmark_, strategy, train_config(settings, seed, arch=arch), device=device,
                 meta={"label": label})
    result.timings["wall_seconds"] = [time.perf_counter() - started]
    return result, recorder, strategy


def reference_arch(arch: str) -> str:
    """The plain network whose joint training is the reference of ``arch`` (PNN's columns: the MLP)."""
    return "mlp" if arch == "pnn-mlp" else arch


def joint_reference(benchmark_: bm.Benchmark, settings: Mapping[str, Any], arch: str, *, seed: int = 0,
                    device="cpu") -> np.ndarray:
    """``J[t, j]``: accuracy on task j of the plain network trained from scratch on tasks 1..t+1 together.

    One run of ``joint(from_scratch=True)`` with SGD (the report's reference); cached per
    benchmark, network and seed, so the figures share it.
    """
    key = (benchmark_.name, len(benchmark_), str(benchmark_.describe()["train_sizes"]), arch,
           repr(settings.get(arch if arch != "mlp" else "hidden")), epochs_of(settings, arch, joint=True), seed)
    if key not in _JOINT_CACHE:
        model = network(benchmark_, settings, arch, masked=False, seed=seed)
        config = train_config(settings, seed, epochs_of(settings, arch, joint=True))
        result = fit(model, benchmark_, make("joint", from_scratch=True), config, device=device)
        _JOINT_CACHE[key] = result.R[:, : len(benchmark_)]
    return _JOINT_CACHE[key]


def random_accuracies(benchmark_: bm.Benchmark) -> list[float]:
    """The random stratified classifier's accuracy per task: ``sum_c p_c q_c`` with the class
    frequencies ``p`` of the training set and ``q`` of the test set."""
    out = []
    for task in benchmark_.tasks:
        k = len(task.classes)
        p = torch.bincount(task.train.y.cpu(), minlength=k).double()
        q = torch.bincount(task.test.y.cpu(), minlength=k).double()
        out.append(float((p / p.sum() * q / q.sum()).sum()))
    return out


#: The joint reference is floored at chance + this: a joint model at chance (only in smoke runs of a few
#: steps) would make the ratio's denominator zero.
JOINT_FLOOR = 0.01


def forgetting_ratio(result: Result, joint: np.ndarray, random: list[float]) -> np.ndarray:
    """rho^{<=t} for t = 1..T (:func:`clutils.metrics.forgetting_ratio`), the joint accuracies floored
    at ``A_R + JOINT_FLOOR``."""
    floor = np.asarray(random)[None, :] + JOINT_FLOOR
    return metrics.forgetting_ratio(result.R[:, : len(random)], np.maximum(joint, floor), random)


def output_drift(recorder: Recorder, task: int = 0) -> float:
    """The largest absolute change of task ``task``'s test logits between right after it and the end."""
    after, end = recorder.logits[task + 1][task], recorder.logits[-1][task]
    return float((end - after).abs().max())


def binary_fraction(attention: Mapping[str, torch.Tensor]) -> float:
    """The fraction of a task's attentions (at s_max) that are exactly 0 or 1 in floating point."""
    a = torch.cat([v.flatten() for v in attention.values()])
    return float(((a == 0) | (a == 1)).float().mean())


#: The sustained float32 throughput assumed for one GPU on these small convnets at batch 64
#: (an A100-class GPU reaches a fraction of its peak on 32x32 images): the estimate's main uncertainty.
ASSUMED_GPU_FLOPS = 20e12


def training_flops_per_image(model, input_shape, task: int = 0) -> float:
    """Forward FLOPs of one image counted by ``torch.utils.flop_counter``, times 3 (forward and backward)."""
    from torch.utils.flop_counter import FlopCounterMode

    was_training = model.training
    model.eval()
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(torch.zeros(1, *input_shape), task)
    model.train(was_training)
    return 3.0 * counter.get_total_flops()


#: The report's training images per task: CIFAR-10 in 5 tasks of 10,000, CIFAR-100 in 5 tasks of 10,000.
PAPER_TRAIN_SIZES = (10_000,) * 10


def paper_shaped_benchmark(seed: int = 0) -> bm.Benchmark:
    """The report's 10 tasks with one blank 3x32x32 image per class: their shapes and heads, for counting FLOPs."""
    from ..data.tensors import Dataset, TensorData

    def blank(name: str, classes: int) -> Dataset:
        data = TensorData(torch.zeros(classes, 3, 32, 32), torch.arange(classes))
        return Dataset(name, data, data, classes, tuple(map(str, range(classes))), "shapes only")

    return _cifar_sequence(blank("cifar10", 10), blank("cifar100", 100), seed)


def paper_time_estimate(settings: Mapping[str, Any], benchmark_: bm.Benchmark,
                        gpu_flops: float = ASSUMED_GPU_FLOPS,
                        train_sizes: list[int] | tuple[int, ...] | None = None) -> dict[str, Any]:
    """An **estimate** of the paper profile's time on one GPU, from FLOPs (not measured).

    Every method trains ``epochs`` epochs (the most the validation schedule allows: an upper bound)
    on the training images of each task less the held-out fraction; every network's joint
    reference trains from scratch on tasks 1..t for every t. Returns hours per method and in all.
    """
    held = (settings.get("schedule") or {}).get("validation_fraction", 0.0)
    sizes = [n * (1 - held) for n in (train_sizes or [len(t.train) for t in benchmark_.tasks])]
    epochs = settings["epochs"]
    per_image = {}
    for label, (arch, _, masked, bn) in settings["methods"].items():
        per_image[label] = training_flops_per_image(network(benchmark_, settings, arch, masked, bn),
                                                    benchmark_.input_shape)
    hours = {label: f * sum(sizes) * epochs / gpu_flops / 3600 for label, f in per_image.items()}
    joint_images = sum(sum(sizes[: t + 1]) for t in range(len(sizes))) * settings.get("joint_epochs", epochs)
    for arch in sorted({reference_arch(a) for a, *_ in settings["methods"].values()}):
        label = next(l for l, (a, *_r) in settings["methods"].items() if reference_arch(a) == arch and not _r[1])
        hours[f"joint {arch}"] = per_image[label] * joint_images / gpu_flops / 3600
    return {"flops_per_image": per_image, "hours": hours, "total_hours": sum(hours.values()),
            "gpu_flops": gpu_flops, "epochs": epochs}
