"""Chapter helpers for the expansion chapter: progressive networks and the three families compared.

The notebooks ``notebooks/expansion_1_pnn.ipynb`` and ``notebooks/expansion_3_families.ipynb``
read a preset (``clutils.presets.get("expansion-pnn" | "expansion-families", profile)``) and call:

* :func:`benchmark`, :func:`run` (one strategy through the book's loop, with its recipe) and
  :class:`LogitRecorder` (each task's logits right after it was trained, to compare bit for bit);
* :func:`parameter_growth`: parameters of a PNN against the number of tasks, measured and closed form;
* :func:`soup` and :func:`transfer_scores`: the PNN paper's transfer-score table on Fashion-MNIST
  variants (the stand-in for "Pong soup"), with its baselines 1-4;
* :func:`family_row`: one method's accuracy, BWT, memory held, parameters added and time per task;
  :func:`run_families` one table on one seed, :func:`run_families_seeds` the same over several seeds
  (:class:`FamilySeeds`: per-seed tables, mean and standard deviation, per-seed family means).
"""
from __future__ import annotations

import copy
import dataclasses
import math
import time
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from .. import metrics
from ..data import benchmarks as bm
from ..data.datasets import load_dataset
from ..data.named import make_benchmark
from ..data.tensors import TensorData, subset_per_class
from ..models import MLP, build_model
from ..models_pnn import ConvBody, PNNConv, PNNMLP
from ..result import Result
from ..strategies import REGISTRY, make
from ..strategies.recipes import recipe_of
from ..train import TrainConfig, fit
from .replay import held_bytes


def benchmark(settings: Mapping[str, Any], dataset: str | None = None, seed: int = 0,
              scenario: str = "task") -> bm.Benchmark:
    """Split ``dataset`` (or the preset's) into ``tasks`` tasks of ``classes_per_task`` classes, in class order."""
    return make_benchmark("split-mnist", dataset=dataset or settings["dataset"], scenario=scenario,
                          n_tasks=settings["tasks"], classes_per_task=settings["classes_per_task"],
                          train_per_class=settings["train_per_class"], test_per_class=settings["test_per_class"],
                          seed=seed)


class LogitRecorder:
    """Wraps a strategy's ``after_task`` to keep, for every task, its test logits right after it was trained."""

    def __init__(self, strategy, benchmark_: bm.Benchmark):
        self.logits: dict[int, torch.Tensor] = {}
        original = strategy.after_task

        def after_task(model, task, data):
            original(model, task, data)
            was = model.training
            model.eval()
            with torch.no_grad():
                self.logits[task.index] = model(task.test.x, task.index).detach().cpu().clone()
            model.train(was)

        strategy.after_task = after_task

    def identical(self, model, benchmark_: bm.Benchmark) -> list[bool]:
        """Per task: are its logits now bit-identical (``torch.equal``) to those right after it was trained?"""
        device = next(model.parameters()).device
        model.eval()
        with torch.no_grad():
            return [torch.equal(self.logits[t.index], model(t.test.x.to(device), t.index).cpu())
                    for t in benchmark_.tasks]


def train_config(name: str, epochs: int, seed: int = 0, overrides: Mapping[str, Any] | None = None) -> TrainConfig:
    """Strategy ``name``'s recipe (Adam 1e-3, batch 64 without one) for ``epochs`` epochs."""
    recipe = recipe_of(name)
    training = recipe.training() if recipe else {"optimizer": "adam", "lr": 1e-3, "batch_size": 64}
    return TrainConfig(epochs=epochs, seed=seed, progress=False, **{**training, **(overrides or {})})


def run(name: str, bench: bm.Benchmark, hidden: Sequence[int], epochs: int, *, seed: int = 0, device="cpu",
        arch: str | None = None, hp: Mapping[str, Any] | None = None, training: Mapping[str, Any] | None = None,
        record: bool = False):
    """Train a fresh network with strategy ``name`` and its recipe; returns (result, model, strategy, recorder)."""
    recipe = recipe_of(name)
    arch = arch or REGISTRY[name].model_arch or "mlp"
    expanding = bench.scenario == "class" and recipe is not None and recipe.head == "expanding"
    model = build_model(bench, arch, hidden=tuple(hidden), expanding_head=expanding, seed=seed)
    strategy = make(name, **{**(recipe.hp if recipe else {}), **(hp or {})})
    recorder = LogitRecorder(strategy, bench) if record else None
    result = fit(model, bench, strategy, train_config(name, epochs, seed, training), device=device)
    return result, model, strategy, recorder


# ----------------------------------------------------------------------- parameters against tasks


def parameter_growth(in_features: int, hidden: Sequence[int], head_size: int, max_columns: int) -> pd.DataFrame:
    """Per number of tasks t: the PNN's parameters (measured on a built network and by the closed form
    :func:`clutils.models_pnn.parameter_count`) and those of t separate networks of one column each."""
    from ..models_pnn import parameter_count

    heads = [head_size] * max_columns
    model = PNNMLP(in_features, hidden, heads)
    one = model.column_parameters(0)
    rows = [{"tasks": t, "PNN (measured)": model.parameters_used(t),
             "PNN (closed form)": parameter_count(in_features, hidden, heads, t),
             "separate networks": t * one} for t in range(1, max_columns + 1)]
    return pd.DataFrame(rows).set_index("tasks")


def quadratic_fit(t: np.ndarray, n: np.ndarray) -> tuple[np.ndarray, float]:
    """Least-squares ``n ~ a t^2 + b t + c``: the coefficients (a, b, c) and the largest absolute residual."""
    coefficients = np.polyfit(t.astype(float), n.astype(float), 2)
    residual = float(np.abs(np.polyval(coefficients, t) - n).max())
    return coefficients, residual


# ----------------------------------------------------------------------------- the transfer table

#: The Fashion-MNIST variants standing in for the paper's Pong variants (flipped, noisy, zoomed,
#: recoloured): each keeps the ten classes and changes the images.
VARIANTS = {
    "original": "the images as they are",
    "flipped": "mirrored left-right",
    "noisy": "Gaussian noise added (std `noise` in the standardised pixel units), fixed per image",
    "zoomed": "the central 2/3 of the image enlarged to the full size (bilinear)",
    "inverted": "pixel values negated (light on dark becomes dark on light)",
}


def transform(x: torch.Tensor, variant: str, noise: float = 0.5, seed: int = 0) -> torch.Tensor:
    """``x`` (N x C x H x W) as variant ``variant`` (a key of :data:`VARIANTS`)."""
    if variant == "original":
        return x.clone()
    if variant == "flipped":
        return x.flip(-1)
    if variant == "noisy":
        generator = torch.Generator().manual_seed(seed + 7)
        return x + noise * torch.randn(x.shape, generator=generator).to(x.device)
    if variant == "zoomed":
        h, w = x.shape[-2:]
        dh, dw = h // 6, w // 6
        crop = x[..., dh:h - dh, dw:w - dw]
        return F.interpolate(crop, size=(h, w), mode="bilinear", align_corners=False)
    if variant == "inverted":
        return -x
    raise ValueError(f"unknown variant {variant!r}; choose one of: {', '.join(VARIANTS)}")


def soup(settings: Mapping[str, Any], dataset: str | None = None, seed: int = 0, root=None) -> dict[str, dict]:
    """Per variant: a source training set, a small target training set and a test set (all ten classes)."""
    s = settings["soup"]
    data = load_dataset(dataset or settings["dataset"], root)
    train_source = subset_per_class(data.train, s["source_per_class"], seed)
    train_target = subset_per_class(data.train, s["target_per_class"], seed, skip=s["source_per_class"])
    test = subset_per_class(data.test, s["test_per_class"], seed) if s["test_per_class"] else data.test
    out = {}
    for k, variant in enumerate(s["variants"]):
        def make_variant(d: TensorData, offset: int) -> TensorData:
            return TensorData(transform(d.x, variant, s["noise"], seed * 1000 + 10 * k + offset), d.y)
        out[variant] = {"source": make_variant(train_source, 0), "target": make_variant(train_target, 1),
                        "test": make_variant(test, 2), "n_classes": data.n_classes}
    return out


def _train(forward, params: list[nn.Parameter], data: TensorData, test: TensorData, epochs: int, lr: float,
           batch_size: int, seed: int) -> list[float]:
    """Adam on ``params``; the test accuracy after every epoch (the learning curve)."""
    optimizer = torch.optim.Adam(params, lr=lr)
    curve = []
    n = len(data)
    for epoch in range(epochs):
        order = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1009 + epoch))
        for start in range(0, n, batch_size):
            index = order[start:start + batch_size]
            loss = F.cross_entropy(forward(data.x[index]), data.y[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        with torch.no_grad():
            curve.append(float((forward(test.x).argmax(1) == test.y).float().mean()))
    return curve


def transfer_curves(sources: Sequence[str], target: str, variants: Mapping[str, dict], settings: Mapping[str, Any],
                    seed: int = 0, baselines: bool = True, column: str = "mlp",
                    trained: dict | None = None) -> dict[str, list[float]]:
    """The target's learning curve for baseline 1-4 and a PNN whose earlier columns learnt ``sources``.

    ``column="mlp"``: every column (baselines and PNN) an MLP of the preset's ``hidden`` units;
    ``column="conv"``: a convolutional column of the preset's ``soup["conv"]`` (``channels``, ``fc``),
    :class:`clutils.models_pnn.ConvBody` for the baselines and :class:`clutils.models_pnn.PNNConv`.

    * baseline 1: one column trained from scratch on the target;
    * baseline 2: one column trained on the (first) source, then only a new output layer trained on the target;
    * baseline 3: the same pre-trained column with a new output layer, everything fine-tuned on the target;
    * baseline 4: a random column, frozen, only its output layer trained on the target;
    * PNN: one frozen column per source (trained in order, each with its laterals), a new column for the target.

    ``trained`` (a dict, filled here) keeps what was trained on the sources, for the next call with the
    same seed, settings and ``column``: the pre-trained column of baselines 2-3 and each PNN source column
    (keyed by the sources up to it). A column is initialised from the same seed whatever the pair, so
    reusing it gives the same bits as training it again (:func:`transfer_scores` relies on it).
    """
    trained = {} if trained is None else trained
    s = settings["soup"]
    hidden, lr, batch = tuple(settings["hidden"]), settings["lr"], settings["batch_size"]
    first = variants[sources[0]]
    if column not in ("mlp", "conv"):
        raise ValueError(f"unknown column {column!r}; choose 'mlp' or 'conv'")
    in_shape = tuple(first["source"].x.shape[1:])
    in_features = math.prod(in_shape)
    conv = s.get("conv", {})
    if column == "conv" and not conv:
        raise ValueError("column='conv' needs the preset's soup['conv'] (channels and fc)")
    k = first["n_classes"]
    tgt = variants[target]
    curves: dict[str, list[float]] = {}

    def new_body() -> nn.Module:
        if column == "conv":
            return ConvBody(in_shape, conv["channels"], conv["fc"])
        return MLP(in_features, hidden)

    def fresh_column(offset: int) -> tuple[nn.Module, nn.Linear]:
        torch.manual_seed(seed * 100 + offset)
        body = new_body()
        return body, nn.Linear(body.out_features, k)

    def run_target(body: nn.Module, head: nn.Linear, train_body: bool) -> list[float]:
        params = list(head.parameters()) + (list(body.parameters()) if train_body else [])
        return _train(lambda x: head(body(x)), params, tgt["target"], tgt["test"], s["target_epochs"], lr, batch, seed)

    def pretrained() -> nn.Module:
        key = ("pretrained", sources[0])
        if key not in trained:
            body, head = fresh_column(1)
            _train(lambda x: head(body(x)), list(body.parameters()) + list(head.parameters()), first["source"],
                   first["test"], s["source_epochs"], lr, batch, seed)
            trained[key] = body
        return trained[key]

    if baselines:  # they depend on the first source and the target only
        body, head = fresh_column(0)
        curves["baseline 1"] = run_target(body, head, True)
        source_body = pretrained()  # trained once; baseline 2 freezes a copy, baseline 3 fine-tunes another
        curves["baseline 2"] = run_target(copy.deepcopy(source_body), fresh_column(2)[1], False)
        curves["baseline 3"] = run_target(copy.deepcopy(source_body), fresh_column(2)[1], True)
        body, head = fresh_column(3)
        curves["baseline 4"] = run_target(body, head, False)

    torch.manual_seed(seed * 100 + 1)
    heads = [k] * (len(sources) + 1)
    pnn = PNNConv(in_shape, conv["channels"], conv["fc"], heads) if column == "conv" else PNNMLP(in_features, hidden, heads)
    for c, name in enumerate(sources):
        key = ("pnn", tuple(sources[:c + 1]))
        pnn.activate(c)
        if key in trained:  # the same column, trained on the same sources before
            with torch.no_grad():
                pnn.columns[c].load_state_dict(trained[key])
            continue
        _train(lambda x, c=c: pnn(x, c), [p for p in pnn.parameters() if p.requires_grad], variants[name]["source"],
               variants[name]["test"], s["source_epochs"], lr, batch, seed)
        trained[key] = {name_: value.detach().clone() for name_, value in pnn.columns[c].state_dict().items()}
    t = len(sources)
    pnn.activate(t)
    curves[f"PNN {t + 1} col"] = _train(lambda x: pnn(x, t), [p for p in pnn.parameters() if p.requires_grad],
                                        tgt["target"], tgt["test"], s["target_epochs"], lr, batch, seed)
    return curves


def transfer_score(curve: Sequence[float], reference: Sequence[float], chance: float) -> float:
    """Area under the learning curve above chance, relative to baseline 1's, clipped to [0, 2].

    ``AUC = mean over epochs of (accuracy - chance)``; score = AUC / AUC(baseline 1).
    """
    auc = float(np.mean(np.asarray(curve) - chance))
    ref = float(np.mean(np.asarray(reference) - chance))
    return float(np.clip(auc / ref, 0.0, 2.0)) if ref > 0 else float("nan")


def transfer_scores(variants: Mapping[str, dict], settings: Mapping[str, Any], seed: int = 0,
                    column: str = "mlp") -> pd.DataFrame:
    """One row per (sources, target, method): the transfer score, the final accuracy and the AUC.

    ``column`` ("mlp" or "conv") is the kind of every column, baselines and PNN (:func:`transfer_curves`).

    Two-column pairs: the preset's source -> every other variant; with ``three_column``, also the
    source and the next variant -> each remaining one.
    """
    s = settings["soup"]
    names = list(s["variants"])
    source = s["source"]
    pairs = [((source,), t) for t in names if t != source]
    if s.get("three_column") and len(names) > 2:
        second = [n for n in names if n != source][0]
        pairs += [((source, second), t) for t in names if t not in (source, second)]
    rows = []
    cache: dict[tuple[str, str], dict[str, list[float]]] = {}
    trained: dict = {}  # source columns, trained once per seed and reused by every pair
    for sources, target in pairs:
        key = (sources[0], target)
        curves = transfer_curves(sources, target, variants, settings, seed, baselines=key not in cache, column=column,
                                 trained=trained)
        cache.setdefault(key, {k: v for k, v in curves.items() if k.startswith("baseline")})
        curves = {**cache[key], **curves}
        chance = 1 / variants[target]["n_classes"]
        for method, curve in curves.items():
            rows.append({"seed": seed, "column": column, "sources": " + ".join(sources), "target": target, "method": method,
                         "score": transfer_score(curve, curves["baseline 1"], chance),
                         "final accuracy": curve[-1], "curve": curve})
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------------- the families


def plain_parameters(bench: bm.Benchmark, hidden: Sequence[int]) -> int:
    """Parameters of the plain MLP with the benchmark's heads (what a regulariser or replay trains)."""
    return sum(p.numel() for p in build_model(bench, "mlp", hidden=tuple(hidden)).parameters())


def parameters_held(model, tasks: int) -> int:
    """The parameters a network holds after ``tasks`` tasks.

    A network that grows counts itself: DEN its non-zero weights between active units
    (:meth:`clutils.models_den.DENMLP.n_parameters`), PNN its first ``tasks`` columns
    (:meth:`clutils.models_pnn.PNNMLP.parameters_used`); any other network, every parameter.
    """
    if hasattr(model, "n_parameters"):
        return int(model.n_parameters(tasks))
    if hasattr(model, "parameters_used"):
        return int(model.parameters_used(tasks))
    return sum(p.numel() for p in model.parameters())


def family_row(label: str, family: str, result: Result, model, strategy, bench: bm.Benchmark,
               hidden: Sequence[int]) -> dict[str, Any]:
    """One row of the families table (accuracies in %, bytes in KiB, seconds per task).

    Parameters added: what the network holds after the last task less the plain MLP's (negative for
    a network that ends sparser than the dense MLP, as DEN can).
    """
    R = result.R[:, : len(bench)]
    added = parameters_held(model, len(bench)) - plain_parameters(bench, hidden)
    return {"method": label, "family": family, "accuracy": 100 * float(R[-1].mean()),
            "BWT": 100 * metrics.backward_transfer(R),
            "memory held (KiB)": held_bytes(strategy) / 1024,
            "parameters added": int(added),
            "train s per task": float(np.mean(result.timings["train_seconds"]))}


def run_families(settings: Mapping[str, Any], scenario: str, dataset: str | None = None, seed: int = 0,
                 device="cpu") -> tuple[pd.DataFrame, dict]:
    """Every method of the preset that runs in ``scenario``; the table and {label: (result, model, strategy)}.

    Each method trains with its recipe (optimiser, learning rate, hyperparameters) but, when the preset
    sets ``batch_size``, with that batch size: the same epochs and batches give every method the same
    number of steps (the recipes' own batches range from 10 to 256).
    """
    bench = benchmark(settings, dataset, seed, scenario)
    rows, runs = [], {}
    for label, (family, name, arch) in settings["methods"].items():
        if scenario not in REGISTRY[name].scenarios:
            continue
        started = time.perf_counter()
        training = {"batch_size": settings["batch_size"]} if settings.get("batch_size") else None
        result, model, strategy, _ = run(name, bench, settings["hidden"], settings["epochs"], seed=seed,
                                         device=device, arch=arch if scenario == "task" else "mlp",
                                         hp=settings.get("hp", {}).get(name), training=training)
        runs[label] = (result, model, strategy)
        row = family_row(label, family, result, model, strategy, bench, settings["hidden"])
        row["wall s"] = time.perf_counter() - started
        rows.append(row)
    return pd.DataFrame(rows).set_index("method"), runs


# ------------------------------------------------------------------------ the families over seeds

#: The measured columns of :func:`run_families`' table (the family comes with each row).
MEASURED = ("accuracy", "BWT", "memory held (KiB)", "parameters added", "train s per task")


@dataclasses.dataclass
class FamilySeeds:
    """The families comparison in one scenario, run once per seed by :func:`run_families_seeds`.

    ``tables[s]`` is :func:`run_families`' table of seed ``s`` and ``runs[s]`` its
    ``{label: (result, model, strategy)}``; the methods are the same on every seed.
    """

    scenario: str
    seeds: list[int]
    tables: dict[int, pd.DataFrame]
    runs: dict[int, dict]

    @property
    def methods(self) -> list[str]:
        return list(self.tables[self.seeds[0]].index) if self.seeds else []

    @property
    def families(self) -> pd.Series:
        """Each method's family (index: method)."""
        return self.tables[self.seeds[0]]["family"]

    def per_seed(self) -> pd.DataFrame:
        """Every seed's table stacked: one row per (seed, method)."""
        frames = [self.tables[s].reset_index().assign(seed=s) for s in self.seeds]
        columns = ["seed", "method", "family", *MEASURED]
        return pd.concat(frames, ignore_index=True)[columns] if frames else pd.DataFrame(columns=columns)

    def values(self, method: str, column: str) -> list[float]:
        """``column`` of ``method`` in seed order."""
        return [float(self.tables[s].loc[method, column]) for s in self.seeds]

    def summary(self) -> pd.DataFrame:
        """Per method: the mean and the sample standard deviation (ddof 1) of every measured column over the
        seeds, as columns ``(column, "mean")`` and ``(column, "sd")``; the family as ``("family", "")``."""
        grouped = self.per_seed().groupby("method", sort=False)[list(MEASURED)]
        stats = grouped.agg(["mean", "std"]).rename(columns={"std": "sd"}, level=1)
        stats.insert(0, ("family", ""), self.families.reindex(stats.index))
        return stats.loc[self.methods]

    def identical(self, column: str) -> pd.Series:
        """Per method: is ``column`` exactly the same number on every seed (compared, not assumed)?"""
        return pd.Series({m: len(set(self.values(m, column))) == 1 for m in self.methods}, dtype=bool)

    def family_means(self, column: str) -> pd.DataFrame:
        """Per seed (rows) and family (columns): the mean of ``column`` over the family's methods.

        These per-seed family means are what the notebook compares, paired by seed, with
        :func:`clutils.scorecard.beyond_seed_noise`.
        """
        frame = self.per_seed()
        if frame.empty:
            return pd.DataFrame(index=pd.Index(self.seeds, name="seed"))
        means = frame.groupby(["seed", "family"], sort=False)[column].mean().unstack("family")
        return means.reindex(self.seeds)


def run_families_seeds(settings: Mapping[str, Any], scenario: str, seeds: Sequence[int], dataset: str | None = None,
                       device="cpu") -> FamilySeeds:
    """:func:`run_families` once per seed (each seed draws its own training subset and initialisation)."""
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ValueError("run_families_seeds needs at least one seed")
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must differ, got {seeds}")
    tables, runs = {}, {}
    for s in seeds:
        tables[s], runs[s] = run_families(settings, scenario, dataset=dataset, seed=s, device=device)
    return FamilySeeds(scenario, seeds, tables, runs)


def mean_sd(summary: pd.DataFrame, column: str, decimals: int = 1, exact: pd.Series | None = None) -> pd.Series:
    """``column`` of a :meth:`FamilySeeds.summary` as text "mean ± sd"; the plain value for the methods
    where ``exact`` (e.g. :meth:`FamilySeeds.identical`) says it is the same on every seed."""
    def text(method: str) -> str:
        mean, sd = summary.loc[method, (column, "mean")], summary.loc[method, (column, "sd")]
        if exact is not None and bool(exact.get(method, False)):
            return f"{mean:.{decimals}f}"
        return f"{mean:.{decimals}f} ± {sd:.{decimals}f}"
    return pd.Series({m: text(m) for m in summary.index}, dtype=object)
