"""Chapter helpers for AR1 (Maltoni & Lomonaco 2019): benchmarks, models, runs and the measures of its figures.

The notebooks ``notebooks/ar1_*.ipynb`` read a preset (``clutils.presets.get("ar1-...", profile)``)
and call :func:`run_strategies`; everything they plot is computed here from
:class:`~clutils.result.Result` objects:

* :func:`fixed_test_accuracy` / :func:`growing_test_accuracy`: the two views of Figure 8
  (the whole test set after every batch, as CORe50's protocol; only the classes seen so far);
* :func:`last_batch_share`: how much of the predictions fall into the last batch's classes
  (the band of Figure 10);
* :func:`column_band`: the strongest single predicted-class column (Figure 12's alarm signal).

The paper trains the first batch with its own epochs and learning rate (Tables 4-5): a
preset's ``first`` becomes :class:`~clutils.train.TrainConfig`'s ``first_task_epochs`` and
``first_task_lr``, its ``shared_lr_scale`` the loop's learning rate of the layers below the output.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import numpy as np
import torch
from torch import nn

from ..data import benchmarks as bm
from ..data.datasets import load_dataset
from ..data.named import make_benchmark
from ..data.root import data_root
from ..data.tensors import Dataset, TensorData, subset_per_class
from ..models import ContinualModel, SingleHead, build_model, zero_init_head
from ..result import Result
from ..strategies import make
from ..strategies.base import Strategy
from ..strategies.sit import check_lambda, decay_lr
from ..train import TrainConfig, fit, resolve_device

#: How the chapter names the strategies (label -> registry name of the class-incremental version).
PAPER_NAMES = {
    "naive": "naive", "cumulative": "joint", "lwf": "lwf-sit", "ewc": "ewc-sit", "si": "si-sit",
    "cwr": "cwr", "cwr+": "cwr+", "ar1": "ar1",
}


class MissingPretrainedWeightsError(RuntimeError):
    """Pre-trained weights the paper profile needs are not on this machine and cannot be downloaded."""


# ----------------------------------------------------------------------------- benchmarks

_DATA_CACHE: dict[tuple, Dataset] = {}


def _dataset(name: str, root, train_per_class, test_per_class, seed: int, validation: bool = False,
             **options) -> Dataset:
    """``name`` cut to ``train_per_class`` / ``test_per_class`` images per class.

    ``validation=True`` replaces the test set by ``test_per_class`` training images per class
    that the training subset does not use (for tuning: the test set stays unseen).
    """
    key = (name, str(root), train_per_class, test_per_class, seed, validation, tuple(sorted(options.items())))
    if key not in _DATA_CACHE:
        data = load_dataset(name, root, **options)
        train, test = data.train, data.test
        if validation:
            if train_per_class is None or test_per_class is None:
                raise ValueError("a validation split needs train_per_class and test_per_class")
            test = subset_per_class(train, test_per_class, seed, skip=train_per_class)
        elif test_per_class is not None:
            test = subset_per_class(test, test_per_class, seed + 1)
        if train_per_class is not None:
            train = subset_per_class(train, train_per_class, seed)
        _DATA_CACHE.clear()  # one dataset at a time: CORe50 at 128 px is tens of GB
        _DATA_CACHE[key] = Dataset(data.name, TensorData(train.x, train.y), TensorData(test.x, test.y),
                                   data.n_classes, data.class_names, data.source, data.extra)
    return _DATA_CACHE[key]


def build_benchmark(spec: Mapping[str, Any], dataset: str | None = None, order_seed: int = 0,
                    data_seed: int = 0, scenario: str | None = None, root=None) -> bm.Benchmark:
    """The benchmark of a preset's ``benchmark`` entry, with its class order drawn from ``order_seed``.

    ``spec`` keys: ``kind`` (``split`` or ``split-cifar10-100``), ``dataset``, ``tasks``,
    ``first`` (size of the first class group: CORe50 NC's 10), ``scenario``,
    ``train_per_class``, ``test_per_class``, ``shuffle`` (class order from the seed; the first
    run, ``order_seed=None``, keeps the natural order), ``options`` (loader options, e.g.
    ``{"size": 128}`` for CORe50), ``validation`` (test on held-out training images, for
    tuning). ``dataset`` replaces the spec's dataset (a plain split
    of it into ``tasks_override`` or ``tasks`` batches).
    """
    scenario = scenario or spec.get("scenario", "class")
    kind = spec.get("kind", "split")
    if kind == "split-cifar10-100" and dataset is None:
        return make_benchmark("split-cifar10-100", n_tasks=spec["tasks"], scenario=scenario, seed=data_seed,
                              train_per_class=spec.get("train_per_class"),
                              test_per_class=spec.get("test_per_class"), root=root)
    name = dataset or spec["dataset"]
    overridden = dataset is not None and dataset != spec.get("dataset")
    options = {} if overridden else dict(spec.get("options", {}))
    data = _dataset(name, root, spec.get("train_per_class"), spec.get("test_per_class"), data_seed,
                    validation=bool(spec.get("validation", False)), **options)
    n_tasks = spec.get("tasks_override", spec["tasks"]) if overridden else spec["tasks"]
    first = None if overridden else spec.get("first")
    seed = order_seed if spec.get("shuffle", True) else None
    result = bm.split(data, n_tasks, scenario, seed=seed, first=first)
    label = spec.get("label", f"class-incremental split {data.name}")
    result.name = label if not overridden else f"class-incremental split {data.name}"
    result.info["class_order_seed"] = seed
    return result


#: The paper's setting of each figure group, for the claims' stand-in labels: CORe50 NC with
#: GoogLeNet (Figures 7-8 and Appendix A, Table 4) or CaffeNet (Figures 4-5 and 10-13), and the
#: first 6 batches of split CIFAR-10/100 with CifarNet (Figure 3).
PAPER_SETTINGS = {
    "core50": {"dataset": "CORe50", "tasks": 9, "model": "GoogLeNet"},
    "core50-caffenet": {"dataset": "CORe50", "tasks": 9, "model": "CaffeNet"},
    "cifar10-100": {"dataset": "CIFAR-10/100", "tasks": 6, "model": "CifarNet"},
}


def model_label(model: Mapping[str, Any]) -> str:
    """A setup's network in a few words: "MLP 256x256", "GoogLeNet", "CifarNet"."""
    arch = model["arch"]
    if arch == "mlp":
        return "MLP " + "x".join(str(w) for w in model["hidden"])
    return {"googlenet128": "GoogLeNet", "cifarnet": "CifarNet"}.get(arch, arch)


def stand_in(experiment: str, setup: Mapping[str, Any], benchmark: bm.Benchmark) -> str:
    """What ran instead of the paper's setting (a key of :data:`PAPER_SETTINGS`), read from the
    benchmark and the setup that ran; ``""`` when it is the paper's setting."""
    from ..scorecard import stand_in as label
    from ..style import dataset_label

    ran = {"dataset": dataset_label(benchmark.dataset), "tasks": len(benchmark),
           "model": model_label(setup["model"])}
    return label(PAPER_SETTINGS[experiment], ran)


def class_orders(n_runs: int, seed: int = 0) -> list[int | None]:
    """The class-order seeds of ``n_runs`` runs: the first run in the natural order, then seeded shuffles."""
    return [None] + [seed * 1000 + r for r in range(1, n_runs)]


# ----------------------------------------------------------------------------- models


def googlenet128(n_classes: int, pretrained: bool = True) -> ContinualModel:
    """torchvision's GoogLeNet adapted to 128x128 CORe50 images in the spirit of Table 3.

    The 7x7 stem convolution gets stride 1 and no padding (the paper's change for
    128x128 inputs: later feature maps keep roughly the size they have at 224x224);
    the auxiliary classifiers are dropped; the 1000-way ImageNet layer is replaced by
    the continual model's single head (1024 -> ``n_classes``). With ``pretrained`` the
    convolutions start from the ImageNet weights, downloaded once by torchvision; offline
    and not cached, a :class:`MissingPretrainedWeightsError` says which file is missing.
    """
    from torchvision.models import GoogLeNet_Weights, googlenet

    weights = GoogLeNet_Weights.IMAGENET1K_V1 if pretrained else None
    if weights is not None:
        checkpoint = Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name
        try:
            net = googlenet(weights=weights, aux_logits=False)
        except Exception as error:  # offline: URLError, timeout, ...
            raise MissingPretrainedWeightsError(
                "The paper profile of the AR1 chapter fine-tunes torchvision's GoogLeNet pre-trained on "
                f"ImageNet (GoogLeNet_Weights.IMAGENET1K_V1), but its weights file {checkpoint} is not on "
                f"this machine and could not be downloaded from {weights.url} "
                f"({type(error).__name__}: {error}). Go online once (torchvision caches the file), or copy "
                f"{Path(weights.url).name} into {checkpoint.parent} (TORCH_HOME moves that folder); "
                "profile='quick' needs no pre-trained weights."
            ) from error
    else:
        net = googlenet(weights=None, aux_logits=False, init_weights=True)
    stem = net.conv1.conv
    net.conv1.conv = nn.Conv2d(3, 64, kernel_size=7, stride=1, padding=0, bias=False)
    with torch.no_grad():
        net.conv1.conv.weight.copy_(stem.weight)
    net.fc = nn.Identity()
    net.out_features = 1024
    return ContinualModel(net, SingleHead(1024, n_classes))


def pretrained_cifarnet(benchmark: bm.Benchmark, epochs: int, seed: int, device, root=None,
                        lr: float = 1e-3, batch_size: int = 128) -> dict[str, torch.Tensor]:
    """CifarNet's body trained on CIFAR-10 (section 4.3: "the model was pre-trained on CIFAR-10").

    Trained once with Adam and cached under ``<data root>/clutils-cache/``. Needs CIFAR-10.
    """
    cache = data_root(root) / "clutils-cache" / f"ar1-cifarnet-cifar10-e{epochs}-s{seed}.pt"
    if cache.exists():
        return torch.load(cache, map_location="cpu", weights_only=True)
    cifar10 = load_dataset("cifar10", root)
    source = bm.split(cifar10, 1, "class", seed=None)
    model = build_model(source, arch="cifarnet", seed=seed)
    fit(model, source, make("naive"), TrainConfig(epochs=epochs, lr=lr, batch_size=batch_size, seed=seed,
                                                  progress=False), device=device)
    state = {k: v.detach().cpu() for k, v in model.body.state_dict().items()}
    cache.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, cache)
    return state


def build_ar1_model(model_spec: Mapping[str, Any], benchmark: bm.Benchmark, head: str = "maximal",
                    zero_init: bool = False, seed: int = 0, device="cpu", root=None) -> ContinualModel:
    """The model of a preset's ``model`` entry: ``mlp`` / ``cifarnet`` (``pretrained: cifar10``) / ``googlenet128``.

    ``head`` is ``maximal`` (all classes from the start) or ``expanding`` (Appendix A);
    ``zero_init`` sets the initial output layer to zero (Appendix E).
    """
    if head not in ("maximal", "expanding"):
        raise ValueError(f"head must be 'maximal' or 'expanding', got {head!r}")
    spec = dict(model_spec)
    arch = spec.pop("arch")
    pretrained = spec.pop("pretrained", None)
    pretrain_epochs = spec.pop("pretrain_epochs", 20)
    if arch == "googlenet128":
        torch.manual_seed(seed)
        model = googlenet128(benchmark.n_classes, pretrained=pretrained == "imagenet")
        model.head.expanding = head == "expanding"
        model.head.active.fill_(head != "expanding")
    else:
        model = build_model(benchmark, arch=arch, expanding_head=head == "expanding", seed=seed, **spec)
        if pretrained == "cifar10":
            model.body.load_state_dict(pretrained_cifarnet(benchmark, pretrain_epochs, 0, device, root))
        elif pretrained is not None:
            raise ValueError(f"unknown pre-training {pretrained!r} for {arch}")
    if zero_init:
        zero_init_head(model)
    return model


# ----------------------------------------------------------------------------- runs


def run_spec(spec: Mapping[str, Any], settings: Mapping[str, Any]) -> dict[str, Any]:
    """One strategy's complete settings: the preset's ``train`` merged with the strategy's own ``train``."""
    train = {**settings["train"], **spec.get("train", {})}
    return {"strategy": spec["strategy"], "hp": dict(spec.get("hp", {})), "head": spec.get("head", "maximal"),
            "zero_init": bool(spec.get("zero_init", False)), "train": train, "first": spec.get("first")}


def run_strategy(spec: Mapping[str, Any], settings: Mapping[str, Any], benchmark: bm.Benchmark, *,
                 seed: int = 0, device="cpu", root=None, record_confusion: bool = True,
                 observe: Callable[[Strategy], Any] | None = None) -> Result:
    """Train one strategy of a preset on ``benchmark``; ``observe(strategy)`` may attach trackers first."""
    full = run_spec(spec, settings)
    train, first = full["train"], full["first"] or {}
    if set(first) - {"epochs", "lr"}:
        raise ValueError(f"a preset's 'first' takes 'epochs' and 'lr' only, got {sorted(first)}")
    shared = float(train.get("shared_lr_scale", 1.0))
    model = build_ar1_model(settings["model"], benchmark, full["head"], full["zero_init"], seed, device, root)
    strategy = make(full["strategy"], **full["hp"])
    # The decay acts from the second batch on, i.e. with the loop's learning rate (times the shared
    # weights' scale where only they are protected, as in AR1).
    check_lambda(strategy, decay_lr(strategy, float(train["lr"]), shared), train.get("optimizer", "sgd"))
    if observe is not None:
        observe(strategy)
    config = TrainConfig(epochs=int(train["epochs"]), batch_size=int(train["batch_size"]), lr=float(train["lr"]),
                         first_task_epochs=first.get("epochs"), first_task_lr=first.get("lr"),
                         shared_lr_scale=shared, optimizer=train.get("optimizer", "sgd"),
                         momentum=float(train.get("momentum", 0.0)), seed=seed, progress=False,
                         record_confusion=record_confusion)
    started = time.perf_counter()
    result = fit(model, benchmark, strategy, config, device=device,
                 meta={"head": full["head"], "zero_init": full["zero_init"], "first": full["first"]})
    result.timings["total_seconds"] = [time.perf_counter() - started]
    return result


def run_strategies(specs: Mapping[str, Mapping[str, Any]], settings: Mapping[str, Any], *,
                   dataset: str | None = None, seed: int = 0, device="auto", runs: int | None = None,
                   scenario: str | None = None, root=None, record_confusion: bool = True,
                   observe: Callable[[str, Strategy], Any] | None = None,
                   log: Callable[[str], None] | None = print) -> dict[str, list[Result]]:
    """Every strategy of ``specs`` on ``runs`` class orders (the preset's ``runs`` by default).

    Run ``r`` of every strategy sees the same benchmark (class order ``class_orders(runs, seed)[r]``)
    and the same initial weights (seed ``seed + r``). Returns ``{label: [Result per run]}``.
    """
    device = resolve_device(device)
    runs = int(settings.get("runs", 1) if runs is None else runs)
    out: dict[str, list[Result]] = {label: [] for label in specs}
    for r, order in enumerate(class_orders(runs, seed)):
        benchmark = build_benchmark(settings["benchmark"], dataset, order_seed=order, data_seed=seed,
                                    scenario=scenario, root=root)
        for label, spec in specs.items():
            started = time.perf_counter()
            hook = (lambda strategy, label=label: observe(label, strategy)) if observe else None
            result = run_strategy(spec, settings, benchmark, seed=seed + r, device=device, root=root,
                                  record_confusion=record_confusion, observe=hook)
            out[label].append(result)
            if log is not None:
                final = fixed_test_accuracy(result)[-1]
                log(f"run {r + 1}/{runs} {label:>12}: final accuracy {100 * final:5.1f}% "
                    f"({time.perf_counter() - started:.1f} s)")
    return out


# ----------------------------------------------------------------------------- measures


def _test_sizes(result: Result) -> np.ndarray:
    return np.asarray(result.benchmark["test_sizes"], dtype=float)


def fixed_test_accuracy(result: Result) -> np.ndarray:
    """Accuracy on the whole test set (every class, seen or not) after each batch (Fig. 7, Fig. 8 right)."""
    R = result.R
    n = _test_sizes(result)
    return (R * n).sum(1) / n.sum()


def growing_test_accuracy(result: Result) -> np.ndarray:
    """Accuracy on the test patterns of the classes seen so far after each batch (Fig. 8 left)."""
    R = result.R
    n = _test_sizes(result)
    return np.array([(R[i, : i + 1] * n[: i + 1]).sum() / n[: i + 1].sum() for i in range(len(R))])


def per_batch_final_accuracy(result: Result) -> np.ndarray:
    """Accuracy on each batch's classes after the last batch (the bars of Figure 3)."""
    return result.R[-1, : len(result.R)]


def last_batch_share(result: Result) -> np.ndarray:
    """After each batch, the share of all test predictions that fall into that batch's classes."""
    C = result.confusion_matrices()
    if len(C) == 0:
        raise ValueError("no confusion matrices: run with record_confusion=True")
    classes = result.benchmark["classes_per_task"]
    return np.array([C[i][:, classes[i]].sum() / C[i].sum() for i in range(len(C))])


def column_band(result: Result, i: int = -1) -> tuple[int, float]:
    """(class, share) of the predicted class that takes the largest share of the test set after batch ``i``.

    A well-spread model gives each class about ``1 / n_classes``; a single column far above
    that is the "sharp vertical band" of Figure 12.
    """
    C = result.confusion_matrices()[i]
    column = C.sum(0)
    k = int(column.argmax())
    return k, float(column[k] / C.sum())


def curves_frame(results: Mapping[str, Iterable[Result]], view: Callable[[Result], np.ndarray] = None):
    """A long DataFrame (strategy, run, batch, accuracy in %) of a per-batch measure (default: fixed test set)."""
    import pandas as pd

    view = view or fixed_test_accuracy
    rows = []
    for label, runs in results.items():
        for r, result in enumerate(runs):
            for i, value in enumerate(view(result)):
                rows.append({"strategy": label, "run": r, "batch": i + 1, "accuracy": 100 * float(value)})
    return pd.DataFrame(rows)


def final_accuracies(results: Mapping[str, Iterable[Result]], view: Callable[[Result], np.ndarray] = None
                     ) -> dict[str, np.ndarray]:
    """Final accuracy of every run, per strategy (fraction)."""
    view = view or fixed_test_accuracy
    return {label: np.array([view(r)[-1] for r in runs]) for label, runs in results.items()}


def seconds_per_run(results: Mapping[str, Iterable[Result]]) -> dict[str, float]:
    return {label: float(np.mean([sum(r.timings["train_seconds"]) for r in runs])) for label, runs in results.items()}


__all__ = [
    "PAPER_NAMES", "MissingPretrainedWeightsError", "build_benchmark", "class_orders", "googlenet128",
    "pretrained_cifarnet", "build_ar1_model", "run_spec", "run_strategy", "run_strategies",
    "fixed_test_accuracy", "growing_test_accuracy", "per_batch_final_accuracy", "last_batch_share",
    "column_band", "curves_frame", "final_accuracies", "seconds_per_run",
]


# ----------------------------------------------------------------------------- description and figures


def strategy_key(label: str) -> str:
    """The strategy a chapter label names (``"lwf (lambda = 0.5)"`` and ``"naive | zero init"`` -> lwf, naive)."""
    return label.split(" |")[0].split(" (")[0].split(" +")[0].strip()


def color(label: str) -> str:
    """The label's own colour where the book has one (an ablation: ``"cwr + zero init"``), else its strategy's."""
    from ..style import STRATEGY_COLORS, normalise_strategy, strategy_color

    own = normalise_strategy(label.replace(" + ", " ").replace(" | ", " "))
    return STRATEGY_COLORS[own] if own in STRATEGY_COLORS else strategy_color(strategy_key(label))


def describe_setup(setup: Mapping[str, Any], benchmark: bm.Benchmark) -> str:
    """One line for captions: benchmark, model, training and runs."""
    train = setup["train"]
    model = setup["model"]
    if model["arch"] == "mlp":
        net = "MLP " + "-".join(str(w) for w in [int(np.prod(benchmark.input_shape)), *model["hidden"],
                                                 benchmark.n_classes])
    else:
        net = model["arch"] + (f" pre-trained on {model['pretrained']}" if model.get("pretrained") else "")
    sizes = benchmark.describe()
    per_class = setup["benchmark"].get("train_per_class")
    data = (f"{len(benchmark)} batches ({'+'.join(str(len(c)) for c in sizes['classes_per_task'])} classes)"
            + (f", {per_class} training images per class" if per_class else ""))
    shared = train.get("shared_lr_scale", 1.0)
    opt = (f"{train.get('optimizer', 'sgd').upper()}, batch {train['batch_size']}, {train['epochs']} epochs per batch, "
           f"lr {train['lr']:g}" + (f" (shared layers x{shared:g})" if shared != 1.0 else ""))
    own = [k for k, v in setup["strategies"].items() if v.get("train") or v.get("first")]
    if own:
        opt += f"; own learning rates or epochs: {', '.join(own)}"
    return f"{benchmark.name}: {data}; {net}; {opt}; {setup.get('runs', 1)} class order(s)"


def final_table(results: Mapping[str, Iterable[Result]]):
    """Final accuracy (fixed and growing test set), forgetting and train time per strategy, mean ± std over runs."""
    import pandas as pd

    rows = {}
    for label, runs in results.items():
        runs = list(runs)
        fixed = np.array([fixed_test_accuracy(r)[-1] for r in runs])
        growing = np.array([growing_test_accuracy(r)[-1] for r in runs])
        rows[label] = {
            "final accuracy, whole test set (%)": 100 * fixed.mean(),
            "± std over runs": 100 * fixed.std(),
            "final accuracy, classes seen (%)": 100 * growing.mean(),
            "runs": len(runs),
            "train seconds per run": float(np.mean([sum(r.timings["train_seconds"]) for r in runs])),
        }
    return pd.DataFrame(rows).T


def plot_accuracy_curves(results: Mapping[str, Iterable[Result]], view: Callable[[Result], np.ndarray] = None,
                         ax=None, title: str | None = None, ylabel: str = "accuracy (%)"):
    """Figures 7 and 8: mean accuracy after each batch, the band the standard deviation over runs."""
    import matplotlib.pyplot as plt

    view = view or fixed_test_accuracy
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 4.5))
    styles = {"cwr": "--", "cwr+": "-.", "ar1": "-"}
    for label, runs in results.items():
        curves = 100 * np.array([view(r) for r in runs])
        mean, std = curves.mean(0), curves.std(0)
        x = np.arange(1, len(mean) + 1)
        c = color(label)
        ax.plot(x, mean, marker="o", ms=3.5, lw=2.2 if strategy_key(label) == "ar1" else 1.6, color=c,
                ls=styles.get(strategy_key(label), "-"), label=label)
        if len(runs) > 1:
            ax.fill_between(x, mean - std, mean + std, color=c, alpha=0.12, linewidth=0)
    ax.set_xlabel("after training batch")
    ax.set_ylabel(ylabel)
    ax.set_xticks(x)
    ax.set_ylim(0, 100)
    if title:
        ax.set_title(title)
    ax.legend(fontsize="small", ncol=2, loc="upper left")
    return ax.figure


def plot_scenario_bars(per_batch: Mapping[str, Mapping[str, np.ndarray]], axes=None):
    """Figure 3: accuracy on each batch's classes after the last batch, MT beside SIT, with the average."""
    import matplotlib.pyplot as plt

    scenarios = list(per_batch)
    if axes is None:
        _, axes = plt.subplots(1, len(scenarios), figsize=(6.5 * len(scenarios), 4.2), sharey=True)
    axes = np.atleast_1d(axes)
    for ax, scenario in zip(axes, scenarios):
        values = per_batch[scenario]
        labels = list(values)
        n = len(next(iter(values.values())))
        groups = [str(i + 1) for i in range(n)] + ["Avg"]
        width = 0.8 / len(labels)
        for k, label in enumerate(labels):
            v = 100 * np.append(values[label], np.mean(values[label]))
            ax.bar(np.arange(len(groups)) + (k - (len(labels) - 1) / 2) * width, v, width, color=color(label),
                   label=label)
        ax.set_xticks(np.arange(len(groups)))
        ax.set_xticklabels(groups)
        ax.set_xlabel("batch (classes of)")
        ax.set_title(scenario)
        ax.set_ylim(0, 100)
    axes[0].set_ylabel("accuracy after the last batch (%)")
    axes[-1].legend(fontsize="small", ncol=2)
    return axes[0].figure


def normalised_confusion(result: Result, i: int) -> np.ndarray:
    """Row-normalised confusion matrix after batch ``i`` (rows: true class, columns: prediction)."""
    m = result.confusion_matrices()[i].astype(float)
    return m / np.clip(m.sum(1, keepdims=True), 1, None)


def class_order(result: Result) -> list[int]:
    """The classes in the order the batches bring them (so that the band of Figure 10 moves left to right)."""
    return [c for group in result.benchmark["classes_per_task"] for c in group]


def plot_confusion_rows(results: Mapping[str, Result], size: float = 2.0, order_by_batch: bool = True,
                        title: str | None = None, class_names: Iterable[str] | None = None):
    """Figures 10-12: one row of confusion matrices per strategy, one column per batch.

    Classes are sorted in the order the batches bring them (``order_by_batch``), labelled with
    ``class_names`` (class ids when None), thin lines between batches; one colour bar.
    """
    from ..plots import confusion_rows

    labels = list(results)
    first = results[labels[0]]
    order = class_order(first) if order_by_batch else list(range(len(first.confusion[0])))
    for label in labels[1:]:
        if order_by_batch and class_order(results[label]) != order:
            raise ValueError(f"{label} has another class order than {labels[0]}: draw them separately")
    rows = {label: [normalised_confusion(results[label], i)[np.ix_(order, order)]
                    for i in range(len(results[label].confusion))] for label in labels}
    names = list(class_names) if class_names else [str(c) for c in range(len(first.confusion[0]))]
    groups = [len(c) for c in first.benchmark["classes_per_task"]] if order_by_batch else None
    return confusion_rows(rows, [names[c] for c in order], groups=groups, size=size, suptitle=title)


def confusion_explorer(results: Mapping[str, Result], class_names: Iterable[str] | None = None, *,
                       dpi: int = 90, caption: str | None = None):
    """Pick a strategy and a batch, see its confusion matrix: works on the static page and live.

    Every (strategy, batch) matrix is drawn in advance and the controls are linked
    to the figures in the browser (:func:`clutils.widgets.prerendered`), so the
    widget needs no kernel. Each figure has its sentence as text under it;
    ``caption`` (what was run) is appended to that sentence.
    """
    import matplotlib.pyplot as plt
    import seaborn as sns

    from .. import widgets

    labels = list(results)
    n = len(results[labels[0]].confusion)
    given = list(class_names) if class_names else None

    def names_of(result: Result) -> list[str]:
        return given or [str(c) for c in range(len(result.confusion[0]))]

    def draw(strategy: str, batch: int):
        result = results[strategy]
        order = class_order(result)
        names = names_of(result)
        m = normalised_confusion(result, batch - 1)[np.ix_(order, order)]
        fig, ax = plt.subplots(figsize=(4.8, 4.0))
        small = len(order) > 20
        sns.heatmap(m, ax=ax, cmap="magma", vmin=0, vmax=1, square=True,
                    xticklabels=[names[c] for c in order], yticklabels=[names[c] for c in order],
                    cbar_kws={"label": "share of the true class"})
        ax.tick_params(labelsize=5 if small else 8)
        ax.set_xlabel("predicted class")
        ax.set_ylabel("true class")
        ax.set_title(f"{strategy}, after batch {batch}", fontsize="small")
        return fig

    def sentence(strategy: str, batch: int) -> str:
        result = results[strategy]
        share = last_batch_share(result)[batch - 1]
        k, top = column_band(result, batch - 1)
        text = (f"{strategy}, after batch {batch}: {100 * share:.0f}% of the test predictions fall in the "
                f"classes of batch {batch}; the most predicted class, {names_of(result)[k]}, takes {100 * top:.0f}%.")
        return f"{text} {caption}" if caption else text

    return widgets.prerendered(
        draw, [widgets.dropdown("strategy", labels), widgets.slider("batch", range(1, n + 1), value=n,
                                                                   labels=lambda b: f"after batch {b}")],
        caption=sentence, dpi=dpi)


def add_caption(fig, text: str) -> None:
    """:func:`clutils.style.add_caption` with the text wrapped to the figure's width."""
    import textwrap

    from ..style import add_caption as put

    width = max(60, int(fig.get_figwidth() * 15))
    put(fig, textwrap.fill(text, width))


def show_figure(fig, caption: str, title: str | None = None) -> None:
    """Show ``fig``, then its caption as text on the page: **title.** caption.

    ``title`` defaults to the figure's suptitle. The caption is a Markdown output under the
    figure (readable, searchable, translated with the page), not pixels in the PNG.
    """
    import matplotlib.pyplot as plt
    from IPython.display import Markdown, display

    if title is None and getattr(fig, "_suptitle", None) is not None:
        title = fig._suptitle.get_text()
    plt.show()
    head = f"**{title.rstrip('.')}.** " if title else ""
    display(Markdown(f"{head}{caption}"))


def strategy_settings(setup: Mapping[str, Any]):
    """Each strategy's training and hyperparameters as a table (what the captions summarise)."""
    import pandas as pd

    rows = {}
    for label, spec in setup["strategies"].items():
        full = run_spec(spec, setup)
        train = full["train"]
        first = full["first"] or {}
        rows[label] = {
            "strategy": full["strategy"],
            "head": full["head"],
            "lr": train["lr"],
            "shared layers' lr": train["lr"] * train.get("shared_lr_scale", 1.0),
            "epochs (batch 1)": first.get("epochs", train["epochs"]),
            "lr (batch 1)": first.get("lr", train["lr"]),
            "epochs (batches 2+)": train["epochs"],
            "hyperparameters": ", ".join(f"{k}={v}" for k, v in full["hp"].items()) or "-",
        }
    return pd.DataFrame(rows).T
