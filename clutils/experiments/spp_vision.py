"""The SPP paper's natural-image experiments (Peng et al.): Figures 3, 9 and 10, for the paper profile.

* **Figure 10** (supplementary material): CIFAR-100 in 20 tasks of 5 classes, VGG9 (:mod:`clutils.models_vgg`),
  one output layer per task; ACC, BWT and FWT (Eq. 7) after each task. :func:`run_long_sequence` runs it
  (a GPU and the CIFAR-100 download).
* **Figure 3**: VGG9 on MNIST, notMNIST, SVHN, STL-10 and CIFAR-10 in this order, each dataset one task of
  10 classes with its own output layer (and single-head SGD, one layer shared by all five), every image
  as RGB at 32 x 32 (the paper: "all RGB images with the same size of 32*32 pixels"; MNIST's grey
  28 x 28 digits are repeated over three channels and resized). :func:`visual_sequence` builds it from
  :mod:`clutils.data.natural`'s loaders, :func:`run_visual_sequence` runs it. notMNIST has no stable
  public source: its loader reads a local copy only and says so.
* **Figure 9** (supplementary section 6): ResNet-18 (:mod:`clutils.models_resnet`, a 2048-unit layer and a
  classifier per task) on Caltech-101 at 224 x 224 in four tasks of 30, 25, 25 and 22 classes drawn at
  random, each class split 7:3; ACC, BWT, FWT and SMT (Eq. 9, :func:`clutils.metrics.stability_smt`)
  after each task. :func:`caltech_benchmark` builds it, :func:`run_caltech` runs it.
* :func:`estimate_seconds`: the time of a run on one GPU, **an estimate**: the training FLOPs counted by
  ``torch.utils.flop_counter`` times the samples seen, divided by an assumed sustained throughput.

Figures 3 and 9 have code and end-to-end tests on tiny synthetic images; they have not been run on
their datasets here (no GPU, no internet on the machine that builds the book).
"""
from __future__ import annotations

import dataclasses
import time
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from .. import metrics
from ..data import benchmarks as bm
from ..data.datasets import load_dataset
from ..data.named import make_benchmark
from ..data.tensors import Dataset, TensorData
from ..models_resnet import build_resnet18_model
from ..models_vgg import build_vgg9_model, training_flops
from ..result import Result
from ..strategies import make
from ..train import TrainConfig, fit

#: What the paper reports for the figures no CPU build runs (its figures print no numbers in the text).
PAPER_FINDINGS = {
    "Figure 3": ("VGG9 (batch norm) on MNIST, notMNIST, SVHN, STL-10, CIFAR-10 (50,000 training images and 10 "
                 "classes each): SPP best on FWT, BWT and ACC; its FWT about a third of LwF's and MAS's; ACC "
                 "close to joint training; fine-tuning (a head per task) better than single-head SGD."),
    "Figure 9": ("ResNet-18 on Caltech-101 in 4 tasks (30, 25, 25, 22 classes; 224x224, 100 epochs, batch 128, lr "
                 "0.001): at the fourth task SPP's ACC below SGD-F's but above EWC's, MAS's and LwF's; SPP best on "
                 "BWT and SMT at the fourth task, worse than SGD and MAS on SMT at tasks 2-3."),
    "Figure 10": ("VGG9 on CIFAR-100 in 20 tasks of 5 classes: every method struggles; SPP similar to the other "
                  "regularisers on ACC, SGD-F and fine-tuning better when the tasks are many, LwF loses its ability "
                  "to learn; SPP and MAS best on BWT (after SGD-F, frozen); SPP best on FWT."),
}

#: Display name -> registry name of the methods of Figure 10.
FIG10_METHODS = {"SGD-F": "sgd-f", "fine-tuning": "naive", "EWC": "ewc", "MAS": "mas", "LwF": "lwf",
                 "SPP": "spp", "joint": "joint"}


def cifar100_sequence(settings: Mapping[str, Any], seed: int = 0) -> bm.Benchmark:
    """CIFAR-100 in ``settings["tasks"]`` task-incremental tasks of ``settings["classes_per_task"]`` classes."""
    return make_benchmark("icifar100", n_tasks=settings["tasks"], classes_per_task=settings["classes_per_task"],
                          scenario="task", seed=seed, train_per_class=settings.get("train_per_class"),
                          test_per_class=settings.get("test_per_class"))


def _train_config(settings: Mapping[str, Any], seed: int) -> TrainConfig:
    return TrainConfig(epochs=settings["epochs"], batch_size=settings["batch_size"], lr=settings["lr"],
                       optimizer=settings["optimizer"], seed=seed, progress=False)


def _run_methods(bench: bm.Benchmark, settings: Mapping[str, Any], labels: Sequence[str],
                 methods: Mapping[str, str], build_model, seed: int, device,
                 benchmarks: Mapping[str, bm.Benchmark] | None = None) -> dict[str, Result]:
    """Each method of ``labels`` (display name -> registry name in ``methods``) on a model from
    ``build_model(benchmark, seed)``, the same initialisation for all; ``benchmarks`` gives a label its own
    view of the tasks (the shared-head SGD of Figure 3)."""
    unknown = [label for label in labels if label not in methods]
    if unknown:
        raise ValueError(f"unknown method(s) {unknown}; choose from {list(methods)}")
    config = _train_config(settings, seed)
    out = {}
    for label in labels:
        name = methods[label]
        strategy = make(name, **settings.get("hp", {}).get(name, {}))
        own = (benchmarks or {}).get(label, bench)
        model = build_model(own, seed)
        started = time.perf_counter()
        out[label] = fit(model, own, strategy, config, device=device, meta={"label": label})
        out[label].timings["wall_seconds"] = [time.perf_counter() - started]
    return out


def run_long_sequence(settings: Mapping[str, Any], labels: Sequence[str] | None = None, *, seed: int = 0,
                      device="auto", benchmark: bm.Benchmark | None = None) -> dict[str, Result]:
    """Figure 10: each method of ``labels`` (default: :data:`FIG10_METHODS`) on VGG9 from the same initialisation."""
    bench = benchmark or cifar100_sequence(settings, seed)
    return _run_methods(bench, settings, list(labels or FIG10_METHODS), FIG10_METHODS,
                        lambda b, s: build_vgg9_model(b, seed=s), seed, device)


# ------------------------------------------------------------------ Figure 3

#: Figure 3's datasets, in the paper's order.
FIG3_SEQUENCE = ("mnist", "notmnist", "svhn", "stl10", "cifar10")
#: The single-head baseline of Figure 3 ("SGD"): one output layer shared by the five datasets.
SHARED_HEAD = "SGD (one shared head)"
#: Display name -> registry name of the methods of Figure 3.
FIG3_METHODS = {SHARED_HEAD: "naive", "fine-tuning": "naive", "SGD-F": "sgd-f", "EWC": "ewc", "SI": "si",
                "MAS": "mas", "LwF": "lwf", "SPP": "spp", "joint": "joint"}


def as_rgb(data: TensorData, side: int) -> TensorData:
    """Images as 3 channels (a grey channel repeated) of ``side`` x ``side`` (bilinear, antialiased)."""
    x = data.x
    if x.dim() != 4 or x.shape[1] not in (1, 3):
        raise ValueError(f"expected N x 1 x H x W or N x 3 x H x W images, got shape {tuple(x.shape)}")
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    if tuple(x.shape[-2:]) != (side, side):
        x = torch.nn.functional.interpolate(x, size=(side, side), mode="bilinear", antialias=True,
                                            align_corners=False)
    return TensorData(x.contiguous(), data.y)


def _first_per_seed(data: TensorData, n: int | None, seed: int) -> TensorData:
    """At most ``n`` samples of ``data``, drawn at random from ``seed`` (all of them if ``n`` is None)."""
    if n is None or len(data) <= n:
        return data
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))[:n]
    return data.take(order.sort().values)


def sequence_benchmark(datasets: Sequence[Dataset], side: int, train_per_task: int | None = None, seed: int = 0,
                       test_per_task: int | None = None) -> bm.Benchmark:
    """Each dataset one task of the task-incremental scenario (its classes keep their task-local labels,
    dataset class ids are offset by the classes before it), its images RGB at ``side`` x ``side``, at most
    ``train_per_task`` training images (the paper: 50,000; STL-10 has 5,000 labelled ones)."""
    if not datasets:
        raise ValueError("a sequence needs at least one dataset")
    tasks, names, offset = [], [], 0
    for i, data in enumerate(datasets):
        train = as_rgb(_first_per_seed(data.train, train_per_task, seed + i), side)
        test = as_rgb(_first_per_seed(data.test, test_per_task, seed + i), side)
        classes = tuple(range(offset, offset + data.n_classes))
        tasks.append(bm.Task(i, train, test, classes, data.name))
        names += [f"{data.name}:{c}" for c in (data.class_names or range(data.n_classes))]
        offset += data.n_classes
    return bm.Benchmark("+".join(d.name for d in datasets), "task", tasks, offset, (3, side, side),
                        "+".join(d.name for d in datasets), tuple(names), {"seed": seed})


def visual_sequence(settings: Mapping[str, Any], seed: int = 0, root=None) -> bm.Benchmark:
    """Figure 3's benchmark from the datasets of ``settings["sequence"]`` (default :data:`FIG3_SEQUENCE`)."""
    names = [entry["dataset"] for entry in settings["sequence"]] if "sequence" in settings else FIG3_SEQUENCE
    datasets = [load_dataset(name, root=root) for name in names]
    return sequence_benchmark(datasets, settings["input_shape"][-1], settings.get("train_per_task"), seed,
                              settings.get("test_per_task"))


def run_visual_sequence(settings: Mapping[str, Any], labels: Sequence[str] | None = None, *, seed: int = 0,
                        device="auto", benchmark: bm.Benchmark | None = None) -> dict[str, Result]:
    """Figure 3: each method of ``labels`` (default: :data:`FIG3_METHODS`) on VGG9; :data:`SHARED_HEAD`
    trains the same tasks through one output layer (the domain-incremental view: labels 0..9 shared)."""
    bench = benchmark or visual_sequence(settings, seed)
    views = {}
    if len({len(t.classes) for t in bench.tasks}) == 1:
        views[SHARED_HEAD] = dataclasses.replace(bench, scenario="domain")
    elif SHARED_HEAD in (labels or FIG3_METHODS):
        raise ValueError("one shared head needs tasks with the same number of classes")
    return _run_methods(bench, settings, list(labels or FIG3_METHODS), FIG3_METHODS,
                        lambda b, s: build_vgg9_model(b, seed=s), seed, device, views)


# ------------------------------------------------------------------ Figure 9

#: Display name -> registry name of the methods of Figure 9 (no SI: the paper leaves it out, the tasks'
#: class counts differ).
FIG9_METHODS = {"SGD-F": "sgd-f", "fine-tuning": "naive", "EWC": "ewc", "MAS": "mas", "LwF": "lwf",
                "SPP": "spp", "joint": "joint"}


def random_groups(n_classes: int, sizes: Sequence[int], seed: int) -> list[list[int]]:
    """Disjoint groups of ``sizes`` classes drawn at random (from ``seed``) from ``0..n_classes-1``."""
    if any(k < 1 for k in sizes) or sum(sizes) > n_classes:
        raise ValueError(f"cannot draw groups of {list(sizes)} classes from {n_classes}")
    order = torch.randperm(n_classes, generator=torch.Generator().manual_seed(seed)).tolist()
    starts = np.cumsum([0, *sizes])
    return [sorted(order[a:b]) for a, b in zip(starts[:-1], starts[1:])]


def _task_local(data: TensorData, classes: Sequence[int]) -> TensorData:
    """The samples of ``classes``, relabelled 0..len(classes)-1 in that order."""
    lookup = torch.full((int(max(int(data.y.max()), max(classes))) + 1,), -1, dtype=torch.int64)
    lookup[torch.tensor(classes)] = torch.arange(len(classes))
    keep = torch.nonzero(lookup[data.y] >= 0).flatten()
    part = data.take(keep)
    return TensorData(part.x, lookup[part.y])


def grouped_benchmark(dataset: Dataset, groups: Sequence[Sequence[int]]) -> bm.Benchmark:
    """One task-incremental task per group of class ids (groups may differ in size)."""
    tasks = []
    for i, group in enumerate(groups):
        train, test = _task_local(dataset.train, group), _task_local(dataset.test, group)
        if len(train) == 0 or len(test) == 0:
            raise ValueError(f"{dataset.name}: task {i + 1} (classes {list(group)}) has no training or test images")
        tasks.append(bm.Task(i, train, test, tuple(group), f"{len(group)} classes"))
    return bm.Benchmark(f"groups-{dataset.name}", "task", tasks, dataset.n_classes, dataset.input_shape,
                        dataset.name, dataset.class_names, {"groups": [list(g) for g in groups]})


def caltech_benchmark(settings: Mapping[str, Any], seed: int = 0, root=None) -> bm.Benchmark:
    """Figure 9's benchmark: Caltech-101 at ``input_shape`` in groups of ``settings["class_groups"]`` classes."""
    data = load_dataset(settings.get("dataset") or "caltech101", root=root, size=settings["input_shape"][-1])
    return grouped_benchmark(data, random_groups(data.n_classes, settings["class_groups"], seed))


def run_caltech(settings: Mapping[str, Any], labels: Sequence[str] | None = None, *, seed: int = 0,
                device="auto", benchmark: bm.Benchmark | None = None) -> dict[str, Result]:
    """Figure 9: each method of ``labels`` (default: :data:`FIG9_METHODS`) on ResNet-18 with a 2048-unit
    layer and a classifier per task; :func:`curves` then gives ACC, BWT, FWT and SMT per task."""
    bench = benchmark or caltech_benchmark(settings, seed)
    hidden, dropout, flip = settings.get("head_hidden", 2048), settings.get("dropout", 0.5), settings.get("flip", 0.0)
    return _run_methods(bench, settings, list(labels or FIG9_METHODS), FIG9_METHODS,
                        lambda b, s: build_resnet18_model(b, seed=s, hidden=hidden, dropout=dropout, flip=flip),
                        seed, device)


def curves(results: Mapping[str, Result], joint: str = "joint") -> pd.DataFrame:
    """ACC, BWT and FWT (Eq. 7, against the joint run) in percent after each number of tasks, per method."""
    m = results[joint].R[-1] if joint in results else None
    rows = []
    for label, result in results.items():
        R = np.asarray(result.R)[:, : len(result.R)]
        for k in range(1, len(R) + 1):
            sub = R[:k, :k]
            rows.append({"method": label, "tasks": k, "ACC": 100 * metrics.average_accuracy(sub),
                         "BWT": 100 * metrics.backward_transfer(sub) if k > 1 else np.nan,
                         "FWT (Eq. 7)": (100 * metrics.forward_transfer_joint(sub, m[:k])
                                         if m is not None and label != joint and k > 1 else np.nan),
                         "SMT": metrics.stability_smt(sub) if k > 1 else np.nan})
    return pd.DataFrame(rows).set_index(["method", "tasks"])


def samples_seen(settings: Mapping[str, Any], joint: bool) -> int:
    """Training samples one method processes over the sequence: ``tasks x per_task x epochs`` (joint training
    retrains on the union of the tasks so far: ``per_task x epochs x T(T+1)/2``)."""
    T, per_task, epochs = settings["tasks"], settings["train_per_task"], settings["epochs"]
    return per_task * epochs * (T * (T + 1) // 2 if joint else T)


def estimate_seconds(flops_per_sample: float, settings: Mapping[str, Any], methods: Sequence[str],
                     tflops: float) -> float:
    """An estimate of the GPU time: ``flops_per_sample x samples seen / (tflops x 1e12)`` summed over ``methods``
    (``"joint"`` counted with its union of tasks); importance passes and evaluation are left out."""
    if tflops <= 0:
        raise ValueError(f"the assumed throughput must be positive, got {tflops}")
    total = sum(samples_seen(settings, m == "joint") for m in methods)
    return flops_per_sample * total / (tflops * 1e12)


def _shape_only(settings: Mapping[str, Any]) -> bm.Benchmark:
    """A benchmark without data: one task of ``classes_per_task`` classes on ``input_shape`` (to build a model)."""
    k = settings["classes_per_task"]
    return bm.Benchmark("shape-only", "task", [bm.Task(0, None, None, tuple(range(k)), "shape")], k,
                        tuple(settings["input_shape"]), "none")


def vgg9_flops(settings: Mapping[str, Any]) -> float:
    """Training FLOPs per sample of the paper's VGG9 on ``settings["input_shape"]`` (a head of 5 classes)."""
    return training_flops(build_vgg9_model(_shape_only(settings), seed=0), tuple(settings["input_shape"]), 0)


def resnet18_flops(settings: Mapping[str, Any]) -> float:
    """Training FLOPs per sample of torchvision's ResNet-18 at ``settings["input_shape"]`` (Figure 9)."""
    import torchvision
    from torch.utils.flop_counter import FlopCounterMode

    model = torchvision.models.resnet18(num_classes=settings["classes_per_task"])
    x = torch.zeros(2, *settings["input_shape"])
    counter = FlopCounterMode(display=False)
    with counter:
        model(x).sum().backward()
    return counter.get_total_flops() / 2


def cpu_step_seconds(settings: Mapping[str, Any], batch_size: int = 16, steps: int = 2) -> float:
    """Measured: seconds of one VGG9 training step on this machine's CPU at ``batch_size`` (a scale for the estimate)."""
    shape = tuple(settings["input_shape"])
    model = build_vgg9_model(_shape_only(settings), seed=0)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x, y = torch.randn(batch_size, *shape), torch.zeros(batch_size, dtype=torch.long)
    times = []
    for _ in range(steps + 1):
        start = time.perf_counter()
        loss = torch.nn.functional.cross_entropy(model(x, 0), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - start)
    return float(np.median(times[1:]))
