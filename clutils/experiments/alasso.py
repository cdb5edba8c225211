"""Chapter helpers for ALASSO (Park et al., ICCV 2019): benchmarks, networks, runs and measures.

The notebooks ``notebooks/alasso_*.ipynb`` read a preset
(``clutils.presets.get("alasso-...", profile)``) and call these helpers; the
strategy itself is :mod:`clutils.strategies.alasso`, the loss-asymmetry probe
:mod:`clutils.diagnostics.asymmetry`.

* :func:`permuted_benchmark` and :func:`run_methods`: the permuted-MNIST
  comparison of Figures 4-7 and Tables 1-2 (one fresh model per method, the
  same training settings for all);
* :func:`comparison_table`: final accuracy, its spread across tasks,
  forgetting and intransigence (Chaudhry et al.) per method;
* :func:`split_benchmark` and :func:`paper_convnet`: the split CIFAR-10/100 and
  split Tiny ImageNet experiments (Figures 8-9) with the conv nets of
  Tables D and E, or the quick profile's stand-in;
* :data:`PAPER`: the paper's own numbers, for the scorecard.
"""
from __future__ import annotations

import time
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from .. import metrics
from ..data import benchmarks as bm
from ..data.named import make_benchmark
from ..models import ContinualModel, MultiHead, build_model
from ..result import Result
from ..strategies import make
from ..train import TrainConfig, fit

#: The paper's numbers (Table 1, Table 2 and the text of Sections 5.3-5.5).
PAPER = {
    "table1": {  # sensitivity to a: average accuracy after 30 and 100 permuted-MNIST tasks
        30: {0.8: 0.91, 1.0: 0.92, 2.0: 0.94, 3.0: 0.94, 4.0: 0.94, 5.0: 0.94},
        100: {0.8: 0.59, 1.0: 0.62, 2.0: 0.79, 3.0: 0.79, 4.0: 0.78, 5.0: 0.75},
    },
    "table2_permuted": {  # A_30, F_30, I_30
        "EWC": (0.738, 0.243, 0.010), "SI": (0.752, 0.232, 0.008), "ALASSO": (0.944, 0.027, 0.015),
    },
    "table2_cifar": {"SI": (0.632, 0.110, 0.137), "ALASSO": (0.697, 0.026, 0.123)},
    "margin_points": 15.0,  # "outperforms all compared methods with large margins (about 15% point at least)"
    "cifar_gain_points": 5.7,  # ALASSO - SI on split CIFAR-10/100, on average
    "cifar_si_drop_points": 13.9,  # how much SI's accuracy drops
    "cifar_recovered": 0.41,  # share of SI's lost accuracy that ALASSO recovers
    "tiny_alasso": 0.594, "tiny_single": 0.589,  # split Tiny ImageNet average validation accuracy
    "tiny_gain_points": 10.0,  # ALASSO - SI, "approximately 10% point"
}

#: The paper's setting of each experiment (Section 5, Tables C-E), for the claims' stand-in labels.
PAPER_SETTINGS = {
    "permuted": {"dataset": "permuted MNIST", "tasks": 30, "model": "MLP 2000x2000"},
    "loss-asymmetry": {"dataset": "MNIST", "model": "MLP 2000x2000"},
    "cifar10-100": {"dataset": "CIFAR-10/100", "tasks": 30, "model": "Table D conv net"},
    "tiny-imagenet": {"dataset": "Tiny ImageNet", "tasks": 30, "model": "Table E conv net"},
}

#: Display name -> (registry name, model options). Dropout follows Goodfellow et al. (2013).
METHODS = {
    "SGD": ("naive", {}),
    "SGD+dropout": ("naive", {"dropout": 0.5, "input_dropout": 0.2}),
    "EWC": ("ewc", {}),
    "MAS": ("mas", {}),
    "SI": ("si", {}),
    "ALASSO": ("alasso", {}),
    "single_task": ("separate", {}),
    "multi_task": ("joint", {}),
}

#: Colours of the book's palette for each display name (see ``clutils.style``).
STYLE_NAMES = {"SGD": "naive", "SGD+dropout": "frozen", "EWC": "ewc", "MAS": "mas", "SI": "si",
               "ALASSO": "alasso", "single_task": "l2", "multi_task": "joint"}


# ----------------------------------------------------------------------------- permuted MNIST

def permuted_benchmark(settings: Mapping[str, Any], dataset: str | None = None, seed: int = 0,
                       n_tasks: int | None = None, root=None) -> bm.Benchmark:
    """Permuted MNIST (or ``dataset``) with the preset's sizes; the first task unpermuted as in the authors' code."""
    return make_benchmark(
        "permuted-mnist", dataset=dataset, n_tasks=n_tasks or settings["tasks"], seed=seed,
        first_unpermuted=settings.get("first_unpermuted", True),
        train_per_class=settings.get("train_per_class"), test_per_class=settings.get("test_per_class"),
        root=root,
    )


def train_config(settings: Mapping[str, Any], seed: int = 0, progress: bool = False) -> TrainConfig:
    """The training settings every method of a comparison shares."""
    return TrainConfig(
        epochs=settings["epochs"], batch_size=settings["batch_size"], lr=settings["lr"],
        optimizer=settings.get("optimizer", "adam"), reset_optimizer=settings.get("reset_optimizer", False),
        seed=seed, progress=progress,
    )


def method_spec(label: str, settings: Mapping[str, Any]) -> dict[str, Any]:
    """``{"strategy", "hp", "model"}`` of a display name (:data:`METHODS`), with the preset's
    hyperparameters of that strategy (``settings["hp"][strategy]``) filled in.

    ``settings["method_overrides"][label]`` may override any of the three keys.
    """
    custom = dict(settings.get("method_overrides", {}).get(label, {}))
    strategy, model = METHODS.get(label, (custom.get("strategy"), {}))
    if strategy is None:
        raise ValueError(f"unknown method {label!r}: give its 'strategy' in settings['methods']")
    strategy = custom.get("strategy", strategy)
    hp = dict(settings.get("hp", {}).get(strategy, {}))
    hp.update(custom.get("hp", {}))
    return {"strategy": strategy, "hp": hp, "model": {**model, **custom.get("model", {})}}


def build_net(benchmark: bm.Benchmark, settings: Mapping[str, Any], seed: int,
              model_options: Mapping[str, Any] | None = None) -> ContinualModel:
    """The preset's network for ``benchmark``: the MLP, or the conv net of Table D / E."""
    options = dict(model_options or {})
    arch = settings.get("arch", "mlp")
    if arch == "mlp":
        return build_model(benchmark, hidden=tuple(settings["hidden"]), seed=seed, **options)
    return paper_convnet(arch, benchmark, seed=seed, **options)


def run_method(label: str, benchmark: bm.Benchmark, settings: Mapping[str, Any], *, seed: int = 0,
               device="auto", progress: bool = False, spec: Mapping[str, Any] | None = None) -> Result:
    """Train a fresh network on ``benchmark`` with the method ``label`` (see :func:`method_spec`)."""
    spec = dict(spec or method_spec(label, settings))
    model = build_net(benchmark, settings, seed, spec.get("model"))
    strategy = make(spec["strategy"], **spec.get("hp", {}))
    started = time.perf_counter()
    result = fit(model, benchmark, strategy, train_config(settings, seed, progress), device=device,
                 meta={"label": label, "model": dict(spec.get("model", {})), "arch": settings.get("arch", "mlp")})
    result.timings["wall_seconds"] = [time.perf_counter() - started]
    return result


def run_methods(labels: Sequence[str], benchmark: bm.Benchmark, settings: Mapping[str, Any], *,
                seed: int = 0, device="auto", progress: bool = False,
                specs: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, Result]:
    """:func:`run_method` for each label, in order; ``specs`` overrides a label's spec."""
    specs = specs or {}
    return {label: run_method(label, benchmark, settings, seed=seed, device=device, progress=progress,
                              spec=specs.get(label)) for label in labels}


def spec_stacks(spec: Mapping[str, Any], settings: Mapping[str, Any]) -> bool:
    """Whether a run of ``spec`` can join a stacked run (:mod:`clutils.stacked`): the MLP without
    dropout (a stacked run draws other dropout masks than a single run) and a strategy that stacks."""
    from ..stacked import strategy_problem

    model = dict(spec.get("model", {}))
    if settings.get("arch", "mlp") != "mlp" or model.get("dropout") or model.get("input_dropout"):
        return False
    return strategy_problem(make(spec["strategy"], **spec.get("hp", {}))) is None


def run_stacked(jobs: Mapping[Any, tuple[str, bm.Benchmark, int]], settings: Mapping[str, Any], *,
                device="auto", specs: Mapping[str, Mapping[str, Any]] | None = None,
                max_copies: int | None = None) -> dict[Any, Result]:
    """Many runs at once: ``jobs`` maps a key to ``(label, benchmark, seed)``; returns key -> Result.

    The runs whose spec stacks (:func:`spec_stacks`; seeds, sweeps of ``a``, SI, ALASSO, SGD) are
    trained as stacked runs, ``max_copies`` at a time (all of them by default): one pass trains them
    all, each reproducing its single run to float tolerance (see :mod:`clutils.stacked`). The others
    run one at a time with :func:`run_method`. Every copy shares the preset's training settings.
    """
    from ..stacked import Copy, fit_stacked

    specs = specs or {}
    spec_of = {key: dict(specs.get(label) or method_spec(label, settings)) for key, (label, _, _) in jobs.items()}
    together = [key for key in jobs if spec_stacks(spec_of[key], settings)]
    out: dict[Any, Result] = {}
    size = max_copies or max(1, len(together))
    for start in range(0, len(together), size):
        group = together[start:start + size]
        copies = []
        for key in group:
            label, benchmark, seed = jobs[key]
            spec = spec_of[key]
            copies.append(Copy(build_net(benchmark, settings, seed, spec.get("model")), benchmark,
                               make(spec["strategy"], **spec.get("hp", {})), seed,
                               {"label": label, "model": dict(spec.get("model", {})),
                                "arch": settings.get("arch", "mlp")}))
        started = time.perf_counter()
        results = fit_stacked(copies, train_config(settings, copies[0].seed), device=device)
        wall = time.perf_counter() - started
        for key, result in zip(group, results):
            result.timings["wall_seconds"] = [wall / len(group)]  # the stacked run's time, shared out
            out[key] = result
    for key, (label, benchmark, seed) in jobs.items():
        if key not in out:
            out[key] = run_method(label, benchmark, settings, seed=seed, device=device, spec=spec_of[key])
    return {key: out[key] for key in jobs}


def ablation_specs(settings: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Figure 5's ablations from ``settings["ablations"]``: ALASSO with one component switched off.

    Each entry's ``hp`` overrides ALASSO's hyperparameters; ``strength_from``
    takes ``c`` and ``xi`` from another strategy (SI's cumulative Omega is on SI's scale).
    """
    base = method_spec("ALASSO", settings)
    specs = {}
    for label, entry in settings.get("ablations", {}).items():
        hp = dict(base["hp"])
        donor = entry.get("strength_from")
        if donor is not None:
            hp.update({k: v for k, v in settings.get("hp", {}).get(donor, {}).items() if k in ("c", "xi")})
        hp.update(entry.get("hp", {}))
        specs[label] = {**base, "hp": hp}
    return specs


def a_sweep_specs(settings: Mapping[str, Any], values: Sequence[float]) -> dict[str, dict[str, Any]]:
    """Table 1: ALASSO with each ``a`` (everything else as the preset's ALASSO)."""
    base = method_spec("ALASSO", settings)
    return {f"a={a:g}": {**base, "hp": {**base["hp"], "a": float(a)}} for a in values}


# ----------------------------------------------------------------------------- measures

def std_curve(R) -> np.ndarray:
    """Standard deviation of the per-task accuracy over the tasks seen so far (Figures 6 and L)."""
    R = np.asarray(R, dtype=float)
    return np.array([R[i, : i + 1].std() for i in range(len(R))])


def comparison_table(results: Mapping[str, Result], reference: str | None = "multi_task") -> pd.DataFrame:
    """One row per method: final average accuracy (A), its spread across tasks, forgetting (F) and
    intransigence (I) of Chaudhry et al. (2018), the measures of Table 2.

    ``I (intransigence)`` is Chaudhry et al.'s ``I_k = a*_k - a_{k,k}`` for the last task
    (``I_30`` after 30 tasks, the quantity of ALASSO's Table 2); ``mean I over tasks``
    averages ``I_k`` over every task (not a quantity of the paper). The reference ``a*_k``
    is the diagonal of ``results[reference]``, the ``multi_task`` run (``joint``): a model
    trained on the union of tasks 1..k, *continued* from the model of tasks 1..k-1 (not
    trained from scratch, as Chaudhry et al. describe it) for the same epochs, with the
    optimiser state the preset says (the ALASSO presets keep Adam's moments across tasks).
    """
    ref = None
    if reference is not None and reference in results:
        R_ref = results[reference].R
        ref = np.diag(R_ref[:, : len(R_ref)])
    rows = []
    for label, result in results.items():
        R = result.R[:, : len(result.R)]
        row = {
            "method": label,
            "A (final average accuracy)": metrics.average_accuracy(R),
            "std across tasks": float(R[-1].std()),
            "F (forgetting)": metrics.forgetting(R),
            "I (intransigence)": metrics.intransigence(R, ref) if ref is not None else np.nan,
            "mean I over tasks": metrics.mean_intransigence(R, ref) if ref is not None else np.nan,
            "train seconds": float(sum(result.timings.get("train_seconds", []))),
        }
        rows.append(row)
    return pd.DataFrame(rows).set_index("method")


def curves_frame(results: Mapping[str, Result]) -> pd.DataFrame:
    """Long form: method, tasks learned, average accuracy so far and its std across tasks."""
    rows = []
    for label, result in results.items():
        R = result.R[:, : len(result.R)]
        for t, (mean, std) in enumerate(zip(metrics.average_accuracy_curve(R), std_curve(R)), 1):
            rows.append({"method": label, "tasks learned": t, "average accuracy": mean, "std across tasks": std})
    return pd.DataFrame(rows)


def snapshot_frame(results: Mapping[str, Result], snapshots: Sequence[int]) -> pd.DataFrame:
    """Per-task accuracy after tasks ``snapshots`` (1-based), the bars of Figures 8 and 9."""
    rows = []
    for label, result in results.items():
        R = result.R
        for t in snapshots:
            if t > len(R):
                continue
            for j in range(t):
                rows.append({"method": label, "after task": t, "task": j + 1, "accuracy": R[t - 1, j]})
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- conv nets (Tables D and E)

#: Tables D and E: conv blocks (channels of each 3x3 conv, then 2x2 max pooling and dropout 0.25),
#: then one dense layer with dropout 0.5 and a per-task softmax.
CONV_TABLES = {
    "table-d": {"blocks": [[4, 4], [8, 8]], "fc": 64},  # split CIFAR-10/100 (input 32x32x3)
    "table-e": {"blocks": [[32], [32], [64], [64], [64]], "fc": 2048},  # Tiny ImageNet (input 224x224x3)
}


class PaperConvNet(nn.Module):
    """The conv nets of ALASSO's Tables D and E ('same' padding, ReLU, 2x2 max pooling, dropout).

    A pooling layer is skipped when the feature map is already smaller than 2x2
    (the quick profile's 28x28 stand-in runs Table E's five blocks that way).
    """

    def __init__(self, blocks: Sequence[Sequence[int]], fc: int, in_channels: int = 3, image_size: int = 32,
                 dropout: bool = True):
        super().__init__()
        layers: list[nn.Module] = []
        channels, size = in_channels, image_size
        for block in blocks:
            for width in block:
                layers += [nn.Conv2d(channels, width, 3, padding=1), nn.ReLU()]
                channels = width
            if size >= 2:
                layers.append(nn.MaxPool2d(2))
                size //= 2
            if dropout:
                layers.append(nn.Dropout(0.25))
        layers.append(nn.Flatten())
        self.layers = nn.Sequential(*layers)
        self.fc = nn.Sequential(nn.Linear(channels * size * size, fc), nn.ReLU(),
                                *([nn.Dropout(0.5)] if dropout else []))
        self.out_features = fc
        self.flat_features = channels * size * size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.layers(x))


def paper_convnet(table: str, benchmark: bm.Benchmark, seed: int | None = None, dropout: bool = True,
                  **_ignored) -> ContinualModel:
    """Table D or E's conv net with one output layer per task (the paper's per-task softmax)."""
    if table not in CONV_TABLES:
        raise ValueError(f"unknown conv net {table!r}; choose one of: {', '.join(CONV_TABLES)}")
    if seed is not None:
        torch.manual_seed(seed)
    shape = benchmark.input_shape
    body = PaperConvNet(CONV_TABLES[table]["blocks"], CONV_TABLES[table]["fc"], shape[0], shape[-1], dropout)
    return ContinualModel(body, MultiHead(body.out_features, benchmark.head_sizes))


# ----------------------------------------------------------------------------- split benchmarks

def split_benchmark(spec: Mapping[str, Any], dataset: str | None = None, seed: int = 0, root=None) -> bm.Benchmark:
    """A task-incremental split benchmark from a preset entry (``spec``).

    ``spec["kind"]``:

    * ``"cifar10-100"``: CIFAR-10's classes then CIFAR-100's, the first
      ``tasks * classes_per_task`` of them in this order, ``classes_per_task``
      per task (the paper: 30 tasks of 3 classes; it does not say which classes,
      this fixed order is our choice);
    * ``"tiny-imagenet"``: Tiny ImageNet's 200 classes in ``wnids`` order,
      ``classes_per_task`` per task (the paper: 30 tasks of 6), images at ``size``;
    A spec that names a ``dataset`` (the smoke and quick profiles) runs a plain split of it in
    ``standin_tasks`` tasks instead, on every machine: the stand-in is part of the profile, not a
    fallback. ``dataset`` (the notebooks' parameter) replaces either by a plain split of it.
    """
    tasks, per_task = spec["tasks"], spec.get("classes_per_task")
    sizes = {"train_per_class": spec.get("train_per_class"), "test_per_class": spec.get("test_per_class"),
             "seed": seed, "root": root}
    dataset = dataset or spec.get("dataset")
    kind = spec["kind"] if dataset is None else "split"
    if kind == "cifar10-100":
        result = make_benchmark("split-cifar10-100", n_tasks=tasks, classes_per_task=per_task, **sizes)
        result.name = f"split CIFAR-10/100 ({tasks} tasks of {per_task} classes)"
    elif kind == "tiny-imagenet":
        # Decode only as many images per class as the subsets keep (the full set is 100,000 JPEGs).
        kept = [n for n in (sizes["train_per_class"], sizes["test_per_class"]) if n is not None]
        options = {"size": spec.get("size"), "max_per_class": max(kept) if kept else None}
        result = make_benchmark("split-tiny-imagenet", n_tasks=tasks, classes_per_task=per_task,
                                dataset_options=options, **sizes)
        result.name = f"split Tiny ImageNet ({tasks} tasks of {per_task} classes)"
    else:
        n_tasks = spec.get("standin_tasks", tasks)
        result = make_benchmark("split-mnist", dataset=dataset, n_tasks=n_tasks, **sizes)
        result.name = f"split {result.dataset} ({n_tasks} tasks of {result.n_classes // n_tasks} classes)"
    return result


def net_label(settings: Mapping[str, Any]) -> str:
    """The preset's network in a few words: "MLP 128x128", "Table D conv net"."""
    arch = settings.get("arch", "mlp")
    if arch == "mlp":
        return f"MLP {'x'.join(str(h) for h in settings['hidden'])}"
    return {"table-d": "Table D conv net", "table-e": "Table E conv net"}.get(arch, arch)


def stand_in(experiment: str, benchmark: bm.Benchmark, settings: Mapping[str, Any]) -> str:
    """What ran instead of the paper's ``experiment`` (a key of :data:`PAPER_SETTINGS`), read from
    the benchmark and the preset that ran; ``""`` when it is the paper's setting."""
    from ..scorecard import stand_in as label
    from ..style import dataset_label

    paper = PAPER_SETTINGS[experiment]
    dataset = dataset_label(benchmark.dataset)
    if experiment == "permuted":
        dataset = f"permuted {dataset}"
    ran = {"dataset": dataset, "tasks": len(benchmark), "model": net_label(settings)}
    return label(paper, {k: v for k, v in ran.items() if k in paper})


def describe_run(benchmark: bm.Benchmark, settings: Mapping[str, Any], arch: str | None = None) -> str:
    """What ran, for captions: benchmark, sizes, network and epochs."""
    task0 = benchmark.tasks[0]
    net = net_label({**settings, "arch": arch or settings.get("arch", "mlp")})
    return (f"{benchmark.name}: {len(benchmark)} tasks, {len(task0.train)} training / {len(task0.test)} test "
            f"samples per task; {net}; {settings['epochs']} epochs per task, batch {settings['batch_size']}, "
            f"{settings.get('optimizer', 'adam')} lr {settings['lr']:g}")


# ----------------------------------------------------------------------------- figures

#: Variants of a method (ablations, dropout) -> (the strategy whose colour they shade, the shade).
VARIANTS = {"SGD+dropout": ("naive", 0.45), "asymmetry only": ("alasso", 0.5),
            "exact Omega only": ("alasso", -0.45), "no decoupling": ("alasso", 0.3)}
#: Line styles of the variants, so that they differ from their method's solid line in grey print too.
VARIANT_STYLES = {"SGD+dropout": "-.", "asymmetry only": "--", "exact Omega only": "-.", "no decoupling": ":"}


#: Colour and line style per display name: the book's strategy colours, upper bounds in black/grey.
def method_color(label: str) -> str:
    from ..style import strategy_color, variant_color

    fixed = {"single_task": "#555555", "multi_task": "#000000"}
    if label in fixed:
        return fixed[label]
    if label in VARIANTS:  # a shade of the strategy it varies, never another strategy's colour
        return variant_color(*VARIANTS[label])
    if label.startswith("SI"):
        return strategy_color("si")
    if label.startswith("ALASSO") or label.startswith("a="):
        return strategy_color("alasso")
    return strategy_color(STYLE_NAMES.get(label, label))


def method_style(label: str) -> str:
    if label in VARIANT_STYLES:
        return VARIANT_STYLES[label]
    return "--" if label in ("single_task", "multi_task") or "tuned" in label else "-"


def _integer_ticks(ax) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def plot_curves(results: Mapping[str, Result], value: str = "average accuracy", ax=None, title: str | None = None):
    """Figure 5/K (``"average accuracy"``) or 6/L (``"std across tasks"``) in percent."""
    import matplotlib.pyplot as plt

    frame = curves_frame(results)
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 4.2))
    for label, part in frame.groupby("method", sort=False):
        ax.plot(part["tasks learned"], 100 * part[value], marker="o", ms=3, lw=1.8,
                color=method_color(label), ls=method_style(label), label=label)
    ax.set_xlabel("number of tasks learned")
    _integer_ticks(ax)
    ax.set_ylabel({"average accuracy": "average accuracy on tasks so far (%)",
                   "std across tasks": "std of per-task accuracy (points)"}.get(value, value))
    if title:
        ax.set_title(title)
    return ax.figure


def plot_early_tasks(results: Mapping[str, Result], tasks: Sequence[int], ax=None, title: str | None = None):
    """Figure 4: accuracy of early tasks (1-based) after each later task, one colour per method."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(7, 4.2))
    styles = ["-", "--", ":", "-.", (0, (5, 1, 1, 1))]
    for label, result in results.items():
        R = result.R
        for k, j in enumerate(tasks):
            x = np.arange(j, len(R) + 1)
            ax.plot(x, 100 * R[j - 1:, j - 1], color=method_color(label), ls=styles[k % len(styles)], lw=1.8,
                    label=f"{label}, task {j}")
    ax.set_xlabel("most recently trained task")
    _integer_ticks(ax)
    ax.set_ylabel("test accuracy (%)")
    if title:
        ax.set_title(title)
    return ax.figure


def plot_snapshots(frame: pd.DataFrame, title: str | None = None):
    """Figures 8-9: per-task accuracy after each snapshot task, bars per method."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    snaps = sorted(frame["after task"].unique())
    fig, axes = plt.subplots(1, len(snaps), figsize=(3.2 * len(snaps) + 1, 3.6), sharey=True, squeeze=False)
    methods = list(dict.fromkeys(frame["method"]))
    for ax, t in zip(axes[0], snaps):
        part = frame[frame["after task"] == t].assign(accuracy=lambda d: 100 * d["accuracy"])
        sns.barplot(data=part, x="task", y="accuracy", hue="method", hue_order=methods, ax=ax,
                    palette={m: method_color(m) for m in methods})
        ax.set_title(f"after task {t}")
        ax.set_ylabel("test accuracy (%)" if ax is axes[0][0] else "")
        if ax is not axes[0][-1] and ax.get_legend() is not None:
            ax.get_legend().remove()
    axes[0][-1].legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small", frameon=False)
    if title:
        fig.suptitle(title, y=1.03)
    return fig


def caption(fig, text: str, width: int | None = None) -> None:
    """``style.add_caption`` with the text wrapped to the figure's width (long run descriptions)."""
    import textwrap

    from ..style import add_caption

    width = width or max(60, int(fig.get_figwidth() * 15))
    add_caption(fig, textwrap.fill(text, width))
