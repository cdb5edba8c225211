"""Chapter helpers for replay (the lecture's section 4; Buzzega et al. 2020): runs, tables, costs.

The notebooks ``notebooks/replay_*.ipynb`` read a preset (``clutils.presets.get("replay-...",
profile)``) and call these helpers; the strategies are :mod:`clutils.strategies.replay`.

* :func:`benchmark`: split, permuted or rotated Fashion-MNIST/MNIST with the preset's sizes;
* :func:`run` and :func:`run_grid`: one fresh MLP per method, buffer size and seed;
* :func:`cost`: time per training step and the memory a strategy holds;
* :data:`PAPER_TABLE2`: the DER paper's Table 2 (the lecture's slide), for the table in its layout.
"""
from __future__ import annotations

import time
from typing import Any, Iterable, Mapping

import numpy as np
import pandas as pd
import torch

from ..data import benchmarks as bm
from ..data.named import make_benchmark
from ..models import build_model
from ..result import Result
from ..strategies import REGISTRY, make
from ..train import TrainConfig, fit

#: Buzzega et al. (2020), Table 2 (mean accuracy over 10 runs, %): column -> buffer -> method -> value.
#: Buffer "-" holds the methods without a buffer; None: not reported (a dash in the paper).
_COLUMNS = ["S-CIFAR-10 Class-IL", "S-CIFAR-10 Task-IL", "S-Tiny-ImageNet Class-IL", "S-Tiny-ImageNet Task-IL",
            "P-MNIST Domain-IL", "R-MNIST Domain-IL"]
_ROWS = {
    ("-", "JOINT"): [92.20, 98.31, 59.99, 82.04, 94.33, 95.76],
    ("-", "SGD"): [19.62, 61.02, 7.92, 18.31, 40.70, 67.66],
    ("-", "oEWC"): [19.49, 68.29, 7.58, 19.20, 75.79, 77.35],
    ("-", "SI"): [19.48, 68.05, 6.58, 36.32, 65.86, 71.91],
    ("-", "LwF"): [19.61, 63.29, 8.46, 15.85, None, None],
    ("-", "PNN"): [None, 95.13, None, 67.84, None, None],
    (200, "ER"): [44.79, 91.19, 8.49, 38.17, 72.37, 85.01],
    (200, "GEM"): [25.54, 90.44, None, None, 66.93, 80.80],
    (200, "A-GEM"): [20.04, 83.88, 8.07, 22.77, 66.42, 81.91],
    (200, "iCaRL"): [49.02, 88.99, 7.53, 28.19, None, None],
    (200, "DER"): [61.93, 91.40, 11.87, 40.22, 81.74, 90.04],
    (200, "DER++"): [64.88, 91.92, 10.96, 40.87, 83.58, 90.43],
    (500, "ER"): [57.74, 93.61, 9.99, 48.64, 80.60, 88.91],
    (500, "GEM"): [26.20, 92.16, None, None, 76.88, 81.15],
    (500, "A-GEM"): [22.67, 89.48, 8.06, 25.33, 67.56, 80.31],
    (500, "iCaRL"): [47.55, 88.22, 9.38, 31.55, None, None],
    (500, "DER"): [70.51, 93.40, 17.75, 51.78, 87.29, 92.24],
    (500, "DER++"): [72.70, 93.88, 19.38, 51.91, 88.21, 92.77],
    (5120, "ER"): [82.47, 96.98, 27.40, 67.29, 89.90, 93.45],
    (5120, "GEM"): [25.26, 95.55, None, None, 87.42, 88.57],
    (5120, "A-GEM"): [21.99, 90.10, 7.96, 26.22, 73.32, 80.18],
    (5120, "iCaRL"): [55.07, 92.23, 14.08, 40.83, None, None],
    (5120, "DER"): [83.81, 95.43, 36.73, 69.50, 91.66, 94.14],
    (5120, "DER++"): [85.24, 96.12, 39.02, 69.84, 92.26, 94.65],
}
PAPER_TABLE2 = pd.DataFrame.from_dict(_ROWS, orient="index", columns=_COLUMNS)
PAPER_TABLE2.index = pd.MultiIndex.from_tuples(PAPER_TABLE2.index, names=["buffer", "method"])

#: Our stand-in for each of the paper's columns: (benchmark name, scenario).
STAND_INS = {
    "S-CIFAR-10 Class-IL": ("split-mnist", "class"),
    "S-CIFAR-10 Task-IL": ("split-mnist", "task"),
    "P-MNIST Domain-IL": ("permuted-mnist", "domain"),
    "R-MNIST Domain-IL": ("rotated-mnist", "domain"),
}
#: Methods with a buffer (run at each buffer size); the others run once.
BUFFERED = ("ER", "GEM", "A-GEM", "DER", "DER++", "iCaRL")


def benchmark(settings: Mapping[str, Any], name: str = "split-mnist", scenario: str | None = None,
              dataset: str | None = None, seed: int = 0, n_tasks: int | None = None) -> bm.Benchmark:
    """``name`` (split, permuted or rotated MNIST, or ``dataset`` instead) with the preset's sizes."""
    tasks = n_tasks or settings.get("tasks") or settings.get("split_tasks")
    options: dict[str, Any] = {}
    if name != "split-mnist":
        options["seed"] = seed
    return make_benchmark(name, n_tasks=tasks, dataset=dataset, scenario=scenario,
                          train_per_class=settings.get("train_per_class"),
                          test_per_class=settings.get("test_per_class"), **options)


def train_config(settings: Mapping[str, Any], seed: int = 0) -> TrainConfig:
    return TrainConfig(epochs=settings["epochs"], batch_size=settings["batch_size"], lr=settings["lr"],
                       optimizer=settings["optimizer"], reset_optimizer=settings.get("reset_optimizer", True),
                       seed=seed, progress=False)


def buffer_changes(label: str, settings: Mapping[str, Any], buffer: int | None,
                   bench: bm.Benchmark | None = None) -> dict[str, Any]:
    """The preset's per-buffer changes of ``label`` (the DER authors' values per buffer size).

    They are the authors' values for sequential MNIST: with ``bench`` given they apply only to
    the benchmarks whose name starts with the preset's ``per_buffer_on`` (the split ones); the
    permuted and rotated columns train every method with the recipe (lr 0.03 like SGD's: ER's
    sequential-MNIST lr 0.01 at buffer 200 learns less per one-epoch permuted task than SGD).
    """
    prefix = settings.get("per_buffer_on")
    if bench is not None and prefix and not bench.name.startswith(prefix):
        return {}
    return dict(settings.get("per_buffer", {}).get(label, {}).get(buffer, {}))


def strategy_for(label: str, settings: Mapping[str, Any], buffer: int | None = None,
                 bench: bm.Benchmark | None = None):
    """The strategy of display name ``label`` with the preset's hyperparameters (and ``buffer``)."""
    spec = settings["hp"][label]
    hp = dict(spec["hp"])
    if label in BUFFERED and buffer is not None:
        hp["buffer_size"] = int(buffer)
        hp.update({k: v for k, v in buffer_changes(label, settings, buffer, bench).items() if k != "lr"})
    return make(spec["strategy"], **hp)


def missing(labels: Iterable[str], settings: Mapping[str, Any]) -> list[str]:
    """The methods of ``labels`` whose strategy is not in ``clutils`` (yet): listed, not run."""
    return [label for label in labels if settings["hp"][label]["strategy"] not in REGISTRY]


def runs_in(label: str, bench: bm.Benchmark, settings: Mapping[str, Any]) -> bool:
    """True when ``label``'s strategy exists and declares ``bench``'s scenario (PNN: Task-IL only)."""
    cls = REGISTRY.get(settings["hp"][label]["strategy"])
    return cls is not None and bench.scenario in cls.scenarios


def run(label: str, bench: bm.Benchmark, settings: Mapping[str, Any], *, buffer: int | None = None,
        seed: int = 0, device="auto", strategy=None) -> tuple[Result, Any]:
    """Train a fresh network on ``bench`` with method ``label``; returns the result and the strategy.

    The network is the preset's MLP, or the one the strategy needs (its ``model_arch``, e.g. PNN's columns);
    ``strategy``: an instance to use instead of the preset's (built by :func:`strategy_for`).
    """
    arch = REGISTRY[settings["hp"][label]["strategy"]].model_arch or settings.get("arch", "mlp")
    model = build_model(bench, arch=arch, hidden=tuple(settings["hidden"]), seed=seed)
    strategy = strategy if strategy is not None else strategy_for(label, settings, buffer, bench)
    lr = buffer_changes(label, settings, buffer, bench).get("lr") if label in BUFFERED else None
    started = time.perf_counter()
    result = fit(model, bench, strategy, train_config({**settings, "lr": lr or settings["lr"]}, seed), device=device,
                 meta={"label": label, "buffer": buffer})
    result.timings["wall_seconds"] = [time.perf_counter() - started]
    return result, strategy


def run_grid(labels: Iterable[str], bench: bm.Benchmark, settings: Mapping[str, Any], *,
             seeds: Iterable[int], buffers: Iterable[int] | None = None, device="auto") -> pd.DataFrame:
    """One row per (method, buffer, seed): final average accuracy and forgetting.

    Methods with a buffer run at every size of ``buffers`` (default: the preset's ``buffer``);
    the others once per seed, with buffer ``"-"``. A method that is not in ``clutils`` (:func:`missing`)
    or does not declare ``bench``'s scenario has no row.
    """
    buffers = list(buffers) if buffers is not None else [settings["buffer"]]
    rows = []
    for label in [label for label in labels if runs_in(label, bench, settings)]:
        for size in (buffers if label in BUFFERED else ["-"]):
            for seed in seeds:
                result, _ = run(label, bench, settings, buffer=None if size == "-" else size, seed=seed,
                                device=device)
                m = result.metrics()
                rows.append({"method": label, "buffer": size, "seed": seed, "accuracy": m["acc"],
                             "forgetting": m["forgetting"], "seconds": result.timings["wall_seconds"][0]})
    return pd.DataFrame(rows, columns=["method", "buffer", "seed", "accuracy", "forgetting", "seconds"])


def per_seed(frame: pd.DataFrame, method: str, buffer="-") -> list[float]:
    """The accuracies of ``method`` (at ``buffer``) in seed order."""
    part = frame[(frame.method == method) & (frame.buffer.astype(str) == str(buffer))].sort_values("seed")
    if part.empty:
        raise KeyError(f"no runs of {method} at buffer {buffer}")
    return part.accuracy.tolist()


def summary(frame: pd.DataFrame) -> pd.DataFrame:
    """Mean and standard deviation over seeds, in percent, one row per (buffer, method)."""
    grouped = frame.assign(buffer=frame.buffer.astype(str)).groupby(["buffer", "method"], sort=False).accuracy
    return (100 * grouped.agg(["mean", "std"])).round(2)


# ----------------------------------------------------------------------------- cost


def held_bytes(strategy) -> int:
    """Bytes of the tensors a strategy keeps between steps (its memory, anchors, snapshots)."""
    seen: set[int] = set()

    def walk(value) -> int:
        if isinstance(value, torch.Tensor):
            if id(value) in seen:
                return 0
            seen.add(id(value))
            return value.numel() * value.element_size()
        if isinstance(value, dict):
            return sum(walk(v) for v in value.values())
        if isinstance(value, (list, tuple)):
            return sum(walk(v) for v in value)
        return 0

    return walk(strategy.state_dict())


def _clock_tasks(strategy) -> dict[str, float]:
    """Wrap ``strategy``'s ``before_task``/``after_task`` so that the returned dict holds the process's
    CPU time when the last task's steps started and ended (the strategy's own hooks not counted)."""
    marks: dict[str, float] = {}
    before, after = strategy.before_task, strategy.after_task

    def before_task(model, task):
        before(model, task)
        marks["start"] = time.process_time()

    def after_task(model, task, data):
        marks["end"] = time.process_time()
        after(model, task, data)

    strategy.before_task, strategy.after_task = before_task, after_task
    return marks


def cost(labels: Iterable[str], bench: bm.Benchmark, settings: Mapping[str, Any], *, buffer: int,
         seed: int = 0, device="auto") -> pd.DataFrame:
    """Per method: CPU seconds of the process per training step over the last task (all earlier tasks
    trained first; from the end of ``before_task`` to the start of ``after_task``: the steps only),
    relative to SGD's, and the memory the strategy holds at the end, in KiB. CPU time, not wall time:
    a step's cost does not depend on what else the machine runs."""
    rows = []
    for label in [label for label in labels if runs_in(label, bench, settings)]:
        strategy = strategy_for(label, settings, buffer, bench)
        marks = _clock_tasks(strategy)
        result, strategy = run(label, bench, settings, buffer=buffer, seed=seed, device=device, strategy=strategy)
        # the samples of the last task's epochs (iCaRL adds its exemplars to the task's data)
        samples = len(strategy.training_data(bench.tasks[-1]).data)
        steps = int(np.ceil(samples / settings["batch_size"])) * settings["epochs"]
        per_step = (marks["end"] - marks["start"]) / steps
        rows.append({"method": label, "ms per step": 1000 * per_step, "memory held (KiB)": held_bytes(strategy) / 1024})
    frame = pd.DataFrame(rows).set_index("method")
    if "SGD" in frame.index:
        frame["x SGD"] = frame["ms per step"] / frame.loc["SGD", "ms per step"]
    return frame.round(2)
