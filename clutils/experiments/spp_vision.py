"""The SPP paper's natural-image experiments (Peng et al.): Figures 3, 9 and 10, for the paper profile.

* **Figure 10** (supplementary material): CIFAR-100 in 20 tasks of 5 classes, VGG9 (:mod:`clutils.models_vgg`),
  one output layer per task; ACC, BWT and FWT (Eq. 7) after each task. :func:`run_long_sequence` runs it
  (a GPU and the CIFAR-100 download).
* **Figure 3** (VGG9 on MNIST, notMNIST, SVHN, STL-10 and CIFAR-10 in this order) and **Figure 9**
  (ResNet-18 on Caltech-101 in four tasks of 30, 25, 25 and 22 classes, with SMT, Eq. 9): clutils has no
  loader for notMNIST, SVHN, STL-10 or Caltech-101, so they are not run; the chapter quotes the paper.
* :func:`estimate_seconds`: the time of a run on one GPU, **an estimate**: the training FLOPs counted by
  ``torch.utils.flop_counter`` times the samples seen, divided by an assumed sustained throughput.
"""
from __future__ import annotations

import time
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from .. import metrics
from ..data import benchmarks as bm
from ..data.named import make_benchmark
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


def run_long_sequence(settings: Mapping[str, Any], labels: Sequence[str] | None = None, *, seed: int = 0,
                      device="auto", benchmark: bm.Benchmark | None = None) -> dict[str, Result]:
    """Figure 10: each method of ``labels`` (default: :data:`FIG10_METHODS`) on VGG9 from the same initialisation."""
    bench = benchmark or cifar100_sequence(settings, seed)
    config = TrainConfig(epochs=settings["epochs"], batch_size=settings["batch_size"], lr=settings["lr"],
                         optimizer=settings["optimizer"], seed=seed, progress=False)
    out = {}
    for label in labels or list(FIG10_METHODS):
        name = FIG10_METHODS[label]
        strategy = make(name, **settings.get("hp", {}).get(name, {}))
        model = build_vgg9_model(bench, seed=seed)
        started = time.perf_counter()
        out[label] = fit(model, bench, strategy, config, device=device, meta={"label": label})
        out[label].timings["wall_seconds"] = [time.perf_counter() - started]
    return out


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
