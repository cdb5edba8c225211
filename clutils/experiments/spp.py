"""Chapter helpers for SPP (Peng et al., "Overcoming catastrophic forgetting by soft parameter pruning").

The notebooks ``notebooks/spp_*.ipynb`` read a preset (``clutils.presets.get("spp-...", profile)``)
and call these helpers; the strategy itself is :mod:`clutils.strategies.spp`.

* :func:`split_benchmark`, :func:`run_method`, :func:`run_methods`: Table 2 with every method in
  the *same* scenario (task-incremental, one output layer per task);
* :func:`transfer_table`: FWT (the paper's Eq. 7 and GEM's), BWT and ACC per method;
* :func:`importance_of`, :func:`normalised`, :func:`bimodality`: Figure 6's distributions;
* :func:`rank_correlation`: Figure 8's "important weights move less", as one number;
* :data:`PAPER`: the paper's numbers, for the side-by-side tables and the scorecard.
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
from ..data.named import make_benchmark
from ..models import ContinualModel, build_model
from ..result import Result
from ..strategies import make
from ..strategies.fisher import diagonal_fisher
from ..strategies.mas import mas_importance
from ..strategies.spp import shared_parameters, spp_importance
from ..train import TrainConfig, fit

#: The paper's numbers: Tables 2 and 3 as (FWT, BWT, ACC) in percent (None: not reported).
PAPER = {
    "table2": {"SGD (one shared head)": (-0.31, -34.01, 61.53), "SGD-F": (-18.6, -12.9, 84.82),
               "fine-tuning": (-0.29, -13.9, 82.04), "EWC": (-4.99, -6.43, 88.75), "SI": (-6.19, -3.51, 90.67),
               "MAS": (-4.38, -2.08, 94.09), "LwF": (-4.42, -2.04, 94.08), "joint": (None, None, 99.87),
               "SPP": (-0.44, -0.75, 98.31)},
    "table3": {"SGD (one shared head)": (1.11, -18.05, 70.45), "SGD-F": (-14.90, 0.10, 81.99),
               "fine-tuning": (0.75, -6.21, 80.69), "EWC": (-0.98, -2.57, 91.97), "SI": (-0.56, -4.40, 90.21),
               "MAS": (-1.23, -1.61, 92.6), "LwF": (0.67, -24.02, 74.15), "joint": (None, None, 95.05),
               "SPP": (2.33, -3.22, 94.51)},
    "fig4_best_lambda": 4.0,  # "The proposed method achieves the best performance with lambda = 4"
    "fig4_plateau": (0.5, 4.0),  # "If lambda is in the range of 0.5 to 4, the performance is relatively stable"
}

#: Display name -> (registry name, scenario). Every method of the chapter's own comparison runs in
#: the task-incremental scenario; "SGD (one shared head)" is the paper's single-head SGD, a
#: domain-incremental run, shown apart.
METHODS = {
    "SGD (one shared head)": ("naive", "domain"),
    "SGD-F": ("sgd-f", "task"),
    "fine-tuning": ("naive", "task"),
    "EWC": ("ewc", "task"),
    "SI": ("si", "task"),
    "MAS": ("mas", "task"),
    "LwF": ("lwf", "task"),
    "joint": ("joint", "task"),
    "SPP": ("spp", "task"),
}

STYLE_NAMES = {"SGD (one shared head)": "naive", "SGD-F": "frozen", "fine-tuning": "naive", "EWC": "ewc",
               "SI": "si", "MAS": "mas", "LwF": "lwf", "joint": "joint", "SPP": "spp"}


def method_color(label: str) -> str:
    from ..style import strategy_color

    if label.startswith("SPP") or label.startswith("lam"):
        return strategy_color("spp")
    return {"SGD (one shared head)": "#888888", "SGD-F": "#b0b0b0"}.get(label) or strategy_color(
        STYLE_NAMES.get(label, label))


# ----------------------------------------------------------------------------- benchmarks and runs

def split_benchmark(settings: Mapping[str, Any], dataset: str | None = None, seed: int = 0,
                    scenario: str = "task") -> bm.Benchmark:
    """Split MNIST (or ``dataset``, else the preset's stand-in dataset) in ``settings["tasks"]`` tasks of two classes."""
    return make_benchmark("split-mnist", dataset=dataset or settings.get("dataset"), scenario=scenario,
                          n_tasks=settings["tasks"], classes_per_task=10 // settings["tasks"], seed=seed,
                          train_per_class=settings.get("train_per_class"),
                          test_per_class=settings.get("test_per_class"))


def train_config(settings: Mapping[str, Any], seed: int = 0) -> TrainConfig:
    """The training every method of a comparison shares (plain SGD, as the paper)."""
    return TrainConfig(epochs=settings["epochs"], batch_size=settings["batch_size"], lr=settings["lr"],
                       optimizer=settings.get("optimizer", "sgd"), seed=seed, progress=False)


def method_hp(label: str, settings: Mapping[str, Any], **changes) -> dict[str, Any]:
    """The preset's hyperparameters of the method ``label`` (see :data:`METHODS`), with ``changes``."""
    name = METHODS[label][0]
    return {**settings.get("hp", {}).get(name, {}), **changes}


def build_net(benchmark: bm.Benchmark, settings: Mapping[str, Any], seed: int) -> ContinualModel:
    """The MLP of the paper (784-512-256 in the paper profile) with dropout after each hidden layer."""
    return build_model(benchmark, hidden=tuple(settings["hidden"]), dropout=settings.get("dropout", 0.0), seed=seed)


def run_method(label: str, benchmark: bm.Benchmark, settings: Mapping[str, Any], *, seed: int = 0,
               device="auto", hp: Mapping[str, Any] | None = None, snapshots: bool = False) -> Result:
    """Train a fresh network on ``benchmark`` with ``label``'s strategy and the preset's training.

    ``hp`` replaces the preset's hyperparameters; with ``snapshots`` the result keeps the shared
    weights after every task in ``result.snapshots`` (and an SPP run each task's own importance
    ``Omega^t`` in ``result.task_importance``), for Figures 7 and 8.
    """
    name = METHODS[label][0] if label in METHODS else label
    strategy = make(name, **(dict(hp) if hp is not None else method_hp(label, settings)))
    model = build_net(benchmark, settings, seed)
    kept, own = [], []
    if snapshots:
        after_task = strategy.after_task

        def recording_after_task(model, task, data):
            kept.append({n: p.detach().clone() for n, p in shared_parameters(model).items()})
            after_task(model, task, data)

        strategy.after_task = recording_after_task
        if hasattr(strategy, "task_importance"):
            measure = strategy.task_importance

            def recording_importance(model, task, data):
                out = measure(model, task, data)
                own.append({n: v.clone() for n, v in out.items()})
                return out

            strategy.task_importance = recording_importance
    started = time.perf_counter()
    result = fit(model, benchmark, strategy, train_config(settings, seed), device=device, meta={"label": label})
    result.timings["wall_seconds"] = [time.perf_counter() - started]
    if snapshots:
        if hasattr(strategy, "importance"):
            strategy.importance  # measures the deferred last task
        result.snapshots, result.task_importance = kept, own
    result.model, result.strategy_object = model, strategy
    return result


def permuted_benchmark(settings: Mapping[str, Any], dataset: str | None = None, seed: int = 0,
                       scenario: str = "task") -> bm.Benchmark:
    """Permuted MNIST (or ``dataset``) in ``settings["tasks"]`` tasks, each the whole (subsampled) dataset
    under its own pixel permutation.

    ``scenario="task"`` gives every task its own output layer of 10 units (the scenario of the
    chapter's comparison: the task is known at test time); ``"domain"`` one shared head (the
    paper's single-head SGD).
    """
    bench = make_benchmark("permuted-mnist", dataset=dataset or settings.get("dataset"), n_tasks=settings["tasks"],
                           seed=seed, train_per_class=settings.get("train_per_class"),
                           test_per_class=settings.get("test_per_class"))
    if scenario not in ("task", "domain"):
        raise ValueError(f"permuted tasks share their classes: scenario 'task' or 'domain', got {scenario!r}")
    return dataclasses.replace(bench, scenario=scenario)


BENCHMARK_KINDS = {"split": split_benchmark, "permuted": permuted_benchmark}


def run_methods(labels: Sequence[str], settings: Mapping[str, Any], *, dataset: str | None = None, seed: int = 0,
                device="auto", kind: str = "split", snapshots: Sequence[str] = ()) -> dict[str, Result]:
    """:func:`run_method` for each label on its scenario's ``kind`` benchmark (``"split"`` or ``"permuted"``);
    the labels in ``snapshots`` keep their weights after every task."""
    if kind not in BENCHMARK_KINDS:
        raise ValueError(f"unknown benchmark kind {kind!r}; choose one of: {', '.join(BENCHMARK_KINDS)}")
    benches: dict[str, bm.Benchmark] = {}
    out = {}
    for label in labels:
        scenario = METHODS[label][1]
        if scenario not in benches:
            benches[scenario] = BENCHMARK_KINDS[kind](settings, dataset, seed, scenario)
        out[label] = run_method(label, benches[scenario], settings, seed=seed, device=device,
                                snapshots=label in snapshots)
        out[label].benchmark = benches[scenario]
    return out


# ----------------------------------------------------------------------------- measures

def transfer_table(results: Mapping[str, Result], joint: str = "joint") -> pd.DataFrame:
    """FWT (the paper's Eq. 7, against ``results[joint]``'s final accuracy per task), GEM's FWT
    (against the untrained model), BWT and ACC per method, in percent."""
    m = results[joint].R[-1] if joint in results else None
    rows = []
    for label, result in results.items():
        R = result.R[:, : len(result.R)]
        rows.append({
            "method": label,
            "FWT (Eq. 7, vs joint)": 100 * metrics.forward_transfer_joint(R, m) if m is not None and label != joint
            else np.nan,
            "FWT (GEM)": 100 * metrics.forward_transfer(R, result.initial_accuracy),
            "BWT": 100 * metrics.backward_transfer(R) if label != joint else np.nan,
            "ACC": 100 * metrics.average_accuracy(R),
        })
    return pd.DataFrame(rows).set_index("method")


def beside_paper(measured: pd.DataFrame, table: str) -> pd.DataFrame:
    """``measured`` (from :func:`transfer_table`) with the paper's FWT, BWT and ACC of ``table``."""
    paper = pd.DataFrame(PAPER[table], index=["FWT (paper)", "BWT (paper)", "ACC (paper)"]).T
    cols = ["FWT (Eq. 7, vs joint)", "BWT", "ACC"]
    out = measured[cols].rename(columns={"FWT (Eq. 7, vs joint)": "FWT (measured)", "BWT": "BWT (measured)",
                                         "ACC": "ACC (measured)"})
    out = out.join(paper, how="outer")
    order = [m for m in METHODS if m in out.index]
    return out.loc[order, ["FWT (measured)", "FWT (paper)", "BWT (measured)", "BWT (paper)", "ACC (measured)",
                           "ACC (paper)"]].astype(float).round(2)


def importance_of(kind: str, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, task: int | None,
                  batch_size: int = 100) -> torch.Tensor:
    """One method's importance of the shared weights of ``model`` on ``(x, y)``, flattened.

    ``kind``: ``"EWC"`` (the empirical diagonal Fisher), ``"MAS"`` or ``"SPP"`` (Eq. 2-3).
    """
    shared = shared_parameters(model)
    if kind == "EWC":
        values = diagonal_fisher(model, x, y, task)
    elif kind == "MAS":
        values = mas_importance(model, x, task)
    elif kind == "SPP":
        values = spp_importance(model, x, task, batch_size)
    else:
        raise ValueError(f"unknown importance {kind!r}; choose EWC, MAS or SPP")
    return torch.cat([values[n].flatten() for n in shared if n.endswith("weight")]).detach().cpu()


def normalised(values: torch.Tensor | np.ndarray, quantile: float = 0.99) -> np.ndarray:
    """``values / q`` clipped to [0, 1], ``q`` the ``quantile`` of the values: the same scale for every
    method, with the few largest values at 1 (a max would let one outlier squeeze the rest to 0)."""
    v = np.asarray(values, dtype=float)
    q = np.quantile(v, quantile)
    return np.clip(v / q, 0.0, 1.0) if q > 0 else np.zeros_like(v)


def bimodality(values: np.ndarray, low: float = 0.05, high: float = 0.95) -> dict[str, float]:
    """Sarle's bimodality coefficient ``(skew^2 + 1) / (kurtosis + 3 (n-1)^2 / ((n-2)(n-3)))`` (above
    5/9 ~ 0.555 suggests two modes) and the mass of the normalised values at both ends."""
    from scipy import stats

    v = np.asarray(values, dtype=float)
    n = len(v)
    skew = stats.skew(v, bias=False)
    kurt = stats.kurtosis(v, bias=False)  # excess kurtosis
    bc = (skew ** 2 + 1) / (kurt + 3 * (n - 1) ** 2 / ((n - 2) * (n - 3)))
    return {"bimodality coefficient": float(bc), f"mass below {low:g}": float((v < low).mean()),
            f"mass above {high:g}": float((v > high).mean())}


def rank_correlation(importance: torch.Tensor, change: torch.Tensor) -> float:
    """Spearman's correlation between the importance of each weight and its *stability* ``-|delta w|``:
    positive when important weights move less (Figure 8's claim)."""
    from scipy import stats

    rho = stats.spearmanr(np.asarray(importance).ravel(), -np.abs(np.asarray(change)).ravel()).statistic
    return float(rho)


def describe_run(benchmark: bm.Benchmark, settings: Mapping[str, Any]) -> str:
    """What ran, for captions."""
    task0 = benchmark.tasks[0]
    net = "MLP " + "-".join(str(h) for h in settings["hidden"])
    return (f"{benchmark.name}: {len(benchmark)} tasks, {len(task0.train)} training / {len(task0.test)} test "
            f"samples per task; {net} with dropout {settings.get('dropout', 0):g}; {settings['epochs']} epochs "
            f"per task, batch {settings['batch_size']}, {settings.get('optimizer', 'sgd')} lr {settings['lr']:g}")


# ----------------------------------------------------------------------------- Figure 7 (permuted tasks)

def model_at(result: Result, index: int) -> torch.nn.Module:
    """A copy of ``result.model`` with the shared weights it had after task ``index`` (``result.snapshots``).

    The output layers are the final model's; a task's own head stops changing once the task is learnt.
    """
    import copy

    if not getattr(result, "snapshots", None):
        raise ValueError("the run kept no snapshots: run it with run_method(..., snapshots=True)")
    model = copy.deepcopy(result.model)
    with torch.no_grad():
        for name, p in shared_parameters(model).items():
            p.copy_(result.snapshots[index][name])
    return model


def first_task_importance(result: Result, benchmark: bm.Benchmark, index: int, batch_size: int = 100,
                          samples: int | None = 1000) -> dict[str, torch.Tensor]:
    """SPP's importance (Eq. 2-3) of the weights the run had after task ``index``, on the *first* task's
    training inputs through the first task's head: the same measure for every method (fine-tuning and
    single-head SGD have no importance of their own)."""
    from ..strategies.fisher import model_task

    task0 = benchmark.tasks[0]
    x = task0.train.x if samples is None else task0.train.x[:samples]
    return spp_importance(model_at(result, index), x, model_task(benchmark, task0), batch_size)


def layer_analysis(result: Result, benchmark: bm.Benchmark, batch_size: int = 100,
                   samples: int | None = 1000) -> pd.DataFrame:
    """Figure 7b and 7c per weight layer of one run: the F value between the first task's importance after
    task 1 and after the last task, and the squared change of the weights from task 1 to the last task
    weighted by the importance after task 1 (and by its complement, :func:`~clutils.diagnostics.spp.unimportance`).
    """
    from ..diagnostics import spp as diag

    first = first_task_importance(result, benchmark, 0, batch_size, samples)
    last = first_task_importance(result, benchmark, -1, batch_size, samples)
    w1, wT = result.snapshots[0], result.snapshots[-1]
    rows = []
    for depth, name in enumerate(n for n in first if n.startswith("body.") and n.endswith("weight")):
        rows.append({"layer": f"{depth + 1}: {name}", "F value": diag.f_value(first[name], last[name]),
                     "weighted change": diag.weighted_change(first[name], w1[name], wT[name]),
                     "change where unimportant": diag.weighted_change(diag.unimportance(first[name]), w1[name],
                                                                      wT[name])})
    return pd.DataFrame(rows).set_index("layer")
