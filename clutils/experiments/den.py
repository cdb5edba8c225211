"""Chapter helpers for DEN (Yoon et al., ICLR 2018): the comparison of Section 4.1, Figure 3.

The notebook ``notebooks/expansion_2_den.ipynb`` reads the presets ``den-variation`` (MNIST-Variation)
and ``den-cifar100`` (CIFAR-100's binary tasks, paper profile only) of :mod:`clutils.presets.den`
and calls these helpers; the strategy is :mod:`clutils.strategies.den`, the network
:mod:`clutils.models_den`.

* :func:`variation`: images rotated by a random angle each and noised (MNIST-Variation's kind);
* :func:`benchmark`: one-versus-rest binary tasks on any dataset of ``clutils.data`` (the preset's
  ``dataset``), one task per class (balanced: as many negatives, drawn from the other classes, as
  positives), with or without the variation (``noise``, ``rotate``);
* :func:`run_comparison`: every method of the preset on one benchmark (the table of Figure 3);
* :func:`training_estimate`: an estimate of a profile's training cost on one GPU (FLOPs and steps);
* :func:`methods`: the comparison's methods from the preset, and those not yet in ``clutils``
  (PNN until its strategy is registered);
* :func:`run_method`: one method on the benchmark: its :class:`~clutils.result.Result`, its
  network size (:func:`network_size`) and its wall time.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
import torch

from ..data import benchmarks as bm
from ..data.datasets import load_dataset
from ..data.tensors import TensorData, subset_per_class
from .expansion import parameters_held
from ..models import build_model
from ..result import Result
from ..strategies import REGISTRY, make
from ..train import TrainConfig, fit

#: What the paper reports on MNIST-Variation (Figure 3, read from the plot; Section 4.1).
PAPER = {
    "accuracy": "DEN about as accurate as DNN-Progressive and DNN-STL, above DNN, DNN-L2 and DNN-EWC",
    "size": "DEN uses a fraction of DNN-Progressive's and DNN-STL's parameters (Figure 3)",
    "tasks": 10,
    "dataset": "MNIST-Variation (rotated and noised MNIST, one-versus-rest)",
}


def variation(x: torch.Tensor, seed: int, noise: float, rotate: bool = True) -> torch.Tensor:
    """Images ``(N, C, H, W)`` each rotated by its own angle, uniform in [0, 360), plus N(0, noise^2) pixel noise.

    The rotation pads from the border (the background); both draws come from ``seed``.
    """
    generator = torch.Generator().manual_seed(seed)
    images = x.float()
    if rotate:
        theta = torch.rand(len(x), generator=generator) * 2 * math.pi
        cos, sin = torch.cos(theta), torch.sin(theta)
        matrix = torch.zeros(len(x), 2, 3)
        matrix[:, 0, 0], matrix[:, 0, 1], matrix[:, 1, 0], matrix[:, 1, 1] = cos, -sin, sin, cos
        grid = torch.nn.functional.affine_grid(matrix, list(images.shape), align_corners=False)
        images = torch.nn.functional.grid_sample(images, grid, mode="bilinear", padding_mode="border",
                                                 align_corners=False)
    if noise:
        images = images + noise * torch.randn(images.shape, generator=generator)
    return images


def _binary(data: TensorData, positive: int, n: int | None, seed: int) -> TensorData:
    """``n`` images of class ``positive`` (label 1) and as many of the other classes (label 0), shuffled."""
    generator = torch.Generator().manual_seed(seed)
    pos = torch.nonzero(data.y == positive).flatten()
    neg = torch.nonzero(data.y != positive).flatten()
    pos = pos[torch.randperm(len(pos), generator=generator)][:n]
    neg = neg[torch.randperm(len(neg), generator=generator)][:len(pos)]
    index = torch.cat([pos, neg])
    y = torch.cat([torch.ones(len(pos), dtype=torch.int64), torch.zeros(len(neg), dtype=torch.int64)])
    order = torch.randperm(len(index), generator=generator)
    return TensorData(data.x[index[order]], y[order])


def benchmark(settings: Mapping[str, Any], dataset: str | None = None, seed: int = 0, root=None) -> bm.Benchmark:
    """One-versus-rest binary tasks on ``dataset`` (or the preset's), task-incremental.

    Task ``k`` asks "is it class ``c_k``?" with ``c_k`` the k-th class in an order drawn from ``seed``
    (``tasks`` of them; None: one for every class of the dataset);
    ``train_per_task`` / ``test_per_task`` images, half of them positives and as many negatives drawn
    from the other classes (None: every positive of the class). With ``noise`` > 0 or ``rotate`` (True
    unless the preset says otherwise) every image is first rotated and noised (:func:`variation`,
    MNIST-Variation's kind); CIFAR-100's tasks (``den-cifar100``) set ``noise`` 0 and ``rotate`` False.
    """
    name = dataset or settings["dataset"]
    source = load_dataset(name, root)
    n_tasks = settings["tasks"] or source.n_classes  # None: a task for every class
    if not 1 <= n_tasks <= source.n_classes:
        raise ValueError(f"{n_tasks} one-versus-rest tasks asked of {name}, which has "
                         f"{source.n_classes} classes (one task per class)")
    train, test = source.train, source.test
    if settings.get("pool_per_class"):  # draw the tasks from a subset of the dataset (quick profiles)
        train = subset_per_class(train, settings["pool_per_class"], seed)
    noise, rotate = settings.get("noise", 0.0), settings.get("rotate", True)
    varied = bool(noise) or rotate
    if varied:
        train = TensorData(variation(train.x, seed + 101, noise, rotate), train.y)
        test = TensorData(variation(test.x, seed + 202, noise, rotate), test.y)
    order = torch.randperm(source.n_classes, generator=torch.Generator().manual_seed(seed)).tolist()
    tasks = []
    for k, c in enumerate(order[:n_tasks]):
        tasks.append(bm.Task(k, _binary(train, c, settings["train_per_task"] // 2 if settings["train_per_task"] else None,
                                        seed * 1000 + k),
                             _binary(test, c, settings["test_per_task"] // 2 if settings["test_per_task"] else None,
                                     seed * 1000 + 500 + k),
                             (source.n_classes, c), f"{source.class_names[c]} vs rest"))
    names = tuple(source.class_names) + ("rest",)
    label = f"{name}-variation one-vs-rest" if varied else f"{name} one-vs-rest"
    return bm.Benchmark(label, "task", tasks, source.n_classes + 1, source.input_shape,
                        name, names, {"seed": seed, "noise": noise, "rotate": rotate})


@dataclass
class Method:
    """One row of the comparison: a label of the paper (``DNN-EWC``), the strategy and its hyperparameters."""

    label: str
    strategy: str
    hp: dict[str, Any]

    @property
    def available(self) -> bool:
        return self.strategy in REGISTRY


def methods(settings: Mapping[str, Any]) -> list[Method]:
    """The preset's methods in order (``settings["methods"]``: label -> [strategy, hp]).

    A method whose strategy is not registered (PNN until ``clutils.strategies.pnn`` exists) stays
    in the list with ``available`` False: the notebook marks it "not yet in clutils".
    """
    return [Method(label, name, dict(hp)) for label, (name, hp) in settings["methods"].items()]


def network(bench: bm.Benchmark, settings: Mapping[str, Any], method: Method, seed: int = 0):
    """The network ``method`` trains: its strategy's own architecture (``model_arch``), else the MLP."""
    arch = REGISTRY[method.strategy].model_arch or "mlp"
    options = {"capacity": tuple(settings["capacity"])} if arch == "den-mlp" and settings.get("capacity") else {}
    return build_model(bench, arch, hidden=tuple(settings["hidden"]), seed=seed, **options)


def network_size(model, method: Method, bench: bm.Benchmark) -> int:
    """The parameters the method ends with, for all tasks.

    DEN: non-zero parameters between active units (:meth:`clutils.models_den.DENMLP.n_parameters`);
    a progressive network: its first ``tasks`` columns (:meth:`clutils.models_pnn.PNNMLP.parameters_used`); DNN-STL: one network (body and one head) per task; the others: one body and a head per task.
    """
    tasks = len(bench)
    if hasattr(model, "n_parameters") or hasattr(model, "parameters_used"):
        return parameters_held(model, tasks)
    heads = [p.numel() for layer in model.output_layers() for p in layer.parameters()]
    body = sum(p.numel() for p in model.parameters()) - sum(heads)
    if method.strategy == "separate":
        return tasks * body + sum(heads)
    return body + sum(heads)


def train_config(settings: Mapping[str, Any], seed: int = 0) -> TrainConfig:
    return TrainConfig(epochs=settings["epochs"], batch_size=settings["batch_size"], lr=settings["lr"],
                       optimizer=settings["optimizer"], seed=seed, progress=False)


def run_method(method: Method, bench: bm.Benchmark, settings: Mapping[str, Any], *, seed: int = 0,
               device="cpu") -> tuple[Result, int, Any, Any]:
    """Train a fresh network with ``method``; returns the result, the network size, the model and the strategy.

    The result's ``timings["wall_seconds"]`` holds the run's wall time.
    """
    if not method.available:
        raise KeyError(f"{method.label}: strategy {method.strategy!r} is not yet in clutils")
    model = network(bench, settings, method, seed)
    strategy = make(method.strategy, **method.hp)
    started = time.perf_counter()
    result = fit(model, bench, strategy, train_config(settings, seed), device=device, meta={"label": method.label})
    result.timings["wall_seconds"] = [time.perf_counter() - started]
    return result, network_size(model, method, bench), model, strategy


def average_accuracy(result: Result) -> float:
    """The mean over tasks of each task's accuracy after the last task (Figure 3's y axis)."""
    R = result.R
    return float(np.mean(R[-1, : R.shape[0]]))


def retention(result: Result, task: int) -> np.ndarray:
    """Task ``task``'s accuracy after each task from ``task`` on (Figure 4: performance over time)."""
    return result.R[task:, task]


def run_comparison(settings: Mapping[str, Any], bench: bm.Benchmark, *, seed: int = 0, device="cpu"):
    """Every method of ``settings["methods"]`` on ``bench``: ``(runs, table)``.

    ``runs``: label -> (result, size, model, strategy) for the methods that ran; ``table``: one row per
    method (average per-task accuracy, parameters at the end, wall seconds; a method whose strategy is
    not in clutils is a row of NaNs with a note).
    """
    import pandas as pd

    runs, rows = {}, []
    for method in methods(settings):
        if not method.available:
            rows.append({"method": method.label, "accuracy": np.nan, "parameters": np.nan, "seconds": np.nan,
                         "note": f"not yet in clutils (strategy {method.strategy!r})"})
            continue
        result, size, model, strategy = run_method(method, bench, settings, seed=seed, device=device)
        runs[method.label] = (result, size, model, strategy)
        rows.append({"method": method.label, "accuracy": average_accuracy(result), "parameters": size,
                     "seconds": result.timings["wall_seconds"][0], "note": ""})
    return runs, pd.DataFrame(rows).set_index("method")


#: The paper's CIFAR-100 and AwA experiments (Section 4.1), with where each number comes from: the
#: lecture's slides (KAIST AI602 lecture 8: "CIFAR-100: 100 classes. Binary task on each class";
#: "AwA: 50 classes. Binary task on each class") and a public review of the paper that restates its
#: Sections 4.1-4.2 (the network, the datasets and splits, DEN's size relative to DNN-STL). The
#: authors' code (``jaehong31/DEN``) covers MNIST only.
PAPER_SETUPS = {
    "CIFAR-100": {
        "images": "500 training and 100 test images per class, 100 classes (the dataset; review of Section 4.1)",
        "tasks": "10 tasks of 10 classes, each class a binary (one-versus-rest) subtask (review of Section 4.1; "
                 "lecture: a binary task on each class)",
        "network": "a modified AlexNet: 5 convolutional layers of 64-128-256-256-128 channels, 5 x 5 filters, "
                   "then fully connected layers of 384-192-100 units (review of Section 4.1)",
        "result": "DEN about as accurate as DNN-STL with 60.3% of its parameters; above DNN, DNN-L2, DNN-EWC "
                  "and DNN-Progressive (review of Section 4.2; Figure 3's plot in the lecture)",
    },
    "AwA": {
        "images": "30,475 images of 50 animal classes (Animals with Attributes, Lampert et al. 2009); "
                  "30/30/30 random images per class for training, validation and test (review of Section 4.1)",
        "tasks": "a binary task on each of the 50 classes (lecture)",
        "network": "the paper's feedforward network (312-128 units, ReLU) on the DeCAF features distributed "
                   "with the dataset, reduced to 500 dimensions by PCA (review of Section 4.1)",
        "result": "DEN about as accurate as DNN-STL with 11.9% of its parameters (review of Section 4.2)",
    },
}


def _dense_parameters(widths: list[int]) -> int:
    """Weights and biases of fully connected layers of ``widths`` (input first, output last)."""
    return sum(a * b + b for a, b in zip(widths[:-1], widths[1:]))


def training_estimate(settings: Mapping[str, Any], *, input_features: int, train_images_per_task: int,
                      tflops: float, step_seconds: float):
    """An ESTIMATE of the training time of every available method of ``settings`` on one GPU.

    Per method: the training samples it sees, its optimiser steps and its training FLOPs, counted as
    6 x (the dense parameters a sample passes through) per sample (2 forward, 4 backward):

    * DNN, DNN-L2, DNN-EWC, DNN-STL: ``tasks x images x epochs`` samples through one MLP (EWC's Fisher
      passes left out);
    * DNN-MTL: all tasks seen so far at every task, ``images x epochs x T(T+1)/2`` samples;
    * PNN: task ``t`` runs forward through ``t`` columns and backward through one (2 P t + 4 P per sample;
      the lateral adapters left out);
    * DEN: its layers at their allocated ``capacity`` (masked, so computed at full width), the loop's
      pass plus at most three passes of its own ``epochs`` (retraining, expansion, split) per task.

    Minutes: the larger of FLOPs / (``tflops`` x 1e12) and steps x ``step_seconds`` (small MLPs are
    bound by the per-step overhead, not by arithmetic), both assumptions; evaluation left out.
    """
    import pandas as pd

    if tflops <= 0 or step_seconds < 0:
        raise ValueError(f"the assumed throughput must be positive and the step time non-negative, "
                         f"got {tflops} TFLOPs and {step_seconds} s")
    T, n, E, batch = settings["tasks"], train_images_per_task, settings["epochs"], settings["batch_size"]
    dense = _dense_parameters([input_features, *settings["hidden"], 2])
    rows = []
    for method in methods(settings):
        if method.strategy == "joint":
            samples = n * E * T * (T + 1) // 2
            flops, steps = 6 * dense * samples, samples / batch
        elif method.strategy == "pnn":
            samples = T * n * E
            flops = sum(n * E * (2 * dense * t + 4 * dense) for t in range(1, T + 1))
            steps = samples / batch
        elif method.strategy == "den":
            capacity = _dense_parameters([input_features, *settings["capacity"], 2])
            own = method.hp.get("epochs", E)
            samples = T * n * (E + 3 * own)
            flops = 6 * capacity * samples
            steps = T * n * (E / batch + 3 * own / method.hp.get("batch_size", batch))
        else:
            samples = T * n * E
            flops, steps = 6 * dense * samples, samples / batch
        seconds = max(flops / (tflops * 1e12), steps * step_seconds)
        rows.append({"method": method.label, "samples seen": samples, "steps": round(steps),
                     "TFLOP": flops / 1e12, "GPU minutes (estimate)": seconds / 60})
    return pd.DataFrame(rows).set_index("method")
