"""Chapter helpers for deep generative replay (Shin et al., NeurIPS 2017): runs, measures and figures.

The notebook ``notebooks/replay_9_generative.ipynb`` reads the preset ``dgr``
(:mod:`clutils.presets.generative`) and calls these helpers; the strategy is
:mod:`clutils.strategies.generative`, the generator :mod:`clutils.generators`.

* :func:`scholar_chain`: Section 4.1's chain of scholars, each trained only on
  the previous scholar's generated inputs and labels;
* :func:`run_replay` on :func:`permuted_benchmark` / :func:`split_benchmark`:
  Figure 3's comparison of replay modes, and the class-incremental runs;
* :func:`plot_chain`, :func:`plot_samples`, :func:`plot_curves`: the figures;
* :data:`PAPER`: the paper's numbers.
"""
from __future__ import annotations

import math
import time
from typing import Any, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..data import benchmarks as bm
from ..data.named import make_benchmark
from ..generators import VAE, adam, frozen_copy, train_vae
from ..models import build_model
from ..result import Result
from ..strategies import make
from ..strategies.generative import scholar_labels
from ..train import TrainConfig, evaluate, fit, resolve_device

#: The paper's numbers (Shin et al. 2017; the lecture's slide).
PAPER = {
    # Section 4.1: test accuracy (%) of each solver on the full MNIST test set
    "chain": [98.81, 98.64, 98.58, 98.53, 98.56],
}

#: The paper's setting of each experiment, for the claims' stand-in labels.
PAPER_SETTINGS = {
    "chain": {"dataset": "MNIST", "model": "WGAN-GP generator"},
    "permuted": {"dataset": "MNIST", "model": "WGAN-GP generator"},
    "split": {"dataset": "MNIST", "tasks": 5, "model": "WGAN-GP generator"},
}

#: Figure 3's names of the replay modes.
MODE_LABELS = {"generative": "GR (generative replay)", "exact": "ER (exact replay)",
               "noise": "Noise (replayed noise)", "none": "None (no replay)"}
MODE_COLORS = {"generative": "#1b9e77", "exact": "#7570b3", "noise": "#d95f02", "none": "#666666"}


def stand_in(experiment: str, benchmark: bm.Benchmark) -> str:
    """What ran instead of the paper's setting ("5 tasks of Fashion-MNIST, a small VAE generator")."""
    from ..scorecard import stand_in as label
    from ..style import dataset_label

    ran = {"dataset": dataset_label(benchmark.dataset), "model": "a small VAE generator"}
    if "tasks" in PAPER_SETTINGS[experiment]:
        ran["tasks"] = len(benchmark)
    return label(PAPER_SETTINGS[experiment], ran)


# ----------------------------------------------------------------------------- benchmarks, runs

def split_benchmark(settings: Mapping[str, Any], dataset: str | None = None, seed: int = 0,
                    n_tasks: int | None = None, scenario: str = "class") -> bm.Benchmark:
    """Split MNIST (or ``dataset``): tasks of two classes, class-incremental by default."""
    return make_benchmark("split-mnist", dataset=dataset or settings["dataset"], scenario=scenario,
                          n_tasks=n_tasks or settings["tasks"], seed=seed,
                          train_per_class=settings.get("train_per_class"),
                          test_per_class=settings.get("test_per_class"))


def permuted_benchmark(settings: Mapping[str, Any], dataset: str | None = None, seed: int = 0) -> bm.Benchmark:
    """Permuted MNIST (or ``dataset``): one pixel permutation per task, one shared head (domain-incremental)."""
    return make_benchmark("permuted-mnist", dataset=dataset or settings["dataset"], n_tasks=settings["tasks"],
                          seed=seed, train_per_class=settings.get("train_per_class"),
                          test_per_class=settings.get("test_per_class"))


def train_config(settings: Mapping[str, Any], seed: int = 0) -> TrainConfig:
    return TrainConfig(epochs=settings["epochs"], batch_size=settings["batch_size"], lr=settings["lr"],
                       optimizer=settings["optimizer"], seed=seed, progress=False)


def run_replay(benchmark: bm.Benchmark, settings: Mapping[str, Any], mode: str = "generative", *, seed: int = 0,
               device="auto", record_samples: int = 0):
    """Train a fresh solver on ``benchmark`` with deep generative replay in ``mode``.

    Returns ``(result, strategy)``; with ``record_samples`` the strategy keeps that many
    generator samples after each task (``strategy.samples_after_task``).
    """
    model = build_model(benchmark, hidden=tuple(settings["hidden"]), seed=seed)
    hp = dict(settings.get("gen", {})) if mode == "generative" else {}
    strategy = make("dgr", replay=mode, **hp)
    strategy.record_samples = record_samples
    started = time.perf_counter()
    result = fit(model, benchmark, strategy, train_config(settings, seed), device=device,
                 meta={"label": mode, "hidden": list(settings["hidden"])})
    result.timings["wall_seconds"] = [time.perf_counter() - started]
    return result, strategy


def run_modes(benchmark: bm.Benchmark, settings: Mapping[str, Any], modes: Sequence[str], *, seed: int = 0,
              device="auto") -> dict[str, Result]:
    """:func:`run_replay` for each mode, the same initial solver for all."""
    return {mode: run_replay(benchmark, settings, mode, seed=seed, device=device)[0] for mode in modes}


def final_accuracy(result: Result) -> float:
    """Mean accuracy over every task after the last one."""
    return float(np.mean(result.R[-1, : len(result.R)]))


# ----------------------------------------------------------------------------- the chain of scholars

def _fit_solver(model: torch.nn.Module, batches, steps: int, lr: float) -> None:
    """``steps`` Adam steps of cross-entropy on the batches ``batches(step)`` returns."""
    optimizer = adam(model.parameters(), lr)
    model.train()
    for step in range(steps):
        x, y = batches(step)
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    model.eval()


def scholar_chain(settings: Mapping[str, Any], dataset: str | None = None, seed: int = 0,
                  device="auto") -> dict[str, Any]:
    """Section 4.1: scholar 1 learns the real data, scholar k+1 only scholar k's samples and labels.

    Scholar 1: a solver trained ``first_epochs`` epochs on the real training set and a
    generator trained ``gen["gen_steps"]`` steps on it. Scholar k+1: a fresh solver trained
    ``solver_steps`` steps on batches drawn from generator k and labelled by solver k, and a
    fresh generator trained as many generator steps on generator k's samples alone. Each
    solver is tested on the real test set. Returns the accuracies, each generator's samples
    (from the same codes) and the benchmark (one task of all classes).
    """
    device = resolve_device(device)
    bench = split_benchmark(settings, dataset, seed, n_tasks=1).to(device)
    task = bench.tasks[0]
    x, y = task.train.x, task.train.y
    gen = settings["gen"]
    batch, lr = settings["batch_size"], settings["lr"]
    torch.manual_seed(seed)

    def new_solver(k: int):
        return build_model(bench, hidden=tuple(settings["hidden"]), seed=seed * 100 + k).to(device)

    def new_generator() -> VAE:
        return VAE(bench.input_shape, gen["gen_hidden"], gen["z_dim"]).to(device)

    def test_accuracy(solver) -> float:
        return evaluate(solver, bench, make("naive"))[0][0]

    def shown(generator: VAE) -> torch.Tensor:
        return generator.sample(settings["samples_shown"], torch.Generator().manual_seed(seed)).cpu()

    solver = new_solver(0)
    steps_per_epoch = math.ceil(len(y) / batch)
    orders = [torch.randperm(len(y), device=device) for _ in range(settings["first_epochs"])]

    def real(step: int):
        index = orders[step // steps_per_epoch][(step % steps_per_epoch) * batch:][:batch]
        return x[index], y[index]

    _fit_solver(solver, real, settings["first_epochs"] * steps_per_epoch, lr)
    generator = new_generator()
    losses = [train_vae(generator, x, steps=gen["gen_steps"], batch_size=gen["gen_batch_size"])]
    accuracies, samples = [test_accuracy(solver)], [shown(generator)]
    for k in range(1, settings["scholars"]):
        old_solver, old_generator = frozen_copy(solver), frozen_copy(generator)

        def scholar(step: int, old_solver=old_solver, old_generator=old_generator):
            inputs = old_generator.sample(batch)
            return inputs, scholar_labels(old_solver, inputs, None)

        solver = new_solver(k)
        _fit_solver(solver, scholar, settings["solver_steps"], lr)
        generator = new_generator()
        generator.copy_range(old_generator)
        losses.append(train_vae(generator, None, steps=gen["gen_steps"], batch_size=gen["gen_batch_size"],
                                replay=old_generator.sample))
        accuracies.append(test_accuracy(solver))
        samples.append(shown(generator))
    return {"accuracy": accuracies, "samples": samples, "benchmark": bench, "generator_losses": losses}


# ----------------------------------------------------------------------------- figures

def plot_chain(accuracies: Sequence[float], paper: Sequence[float] = PAPER["chain"], ax=None):
    """Each solver's test accuracy along the chain, beside the paper's."""
    import matplotlib.pyplot as plt

    fig, ax = (ax.figure, ax) if ax is not None else plt.subplots(figsize=(6.5, 3.8))
    k = np.arange(1, len(accuracies) + 1)
    ax.plot(k, 100 * np.asarray(accuracies), marker="o", color=MODE_COLORS["generative"], label="measured")
    kp = np.arange(1, len(paper) + 1)
    ax.plot(kp, paper, marker="s", ls="--", color="#999999", label="paper (MNIST, WGAN-GP)")
    for i, a in zip(k, accuracies):
        ax.annotate(f"{100 * a:.1f}", (i, 100 * a), textcoords="offset points", xytext=(0, 6), ha="center",
                    fontsize="small")
    ax.set_xticks(kp if len(kp) >= len(k) else k)
    ax.set_xticklabels([f"solver {i}" for i in (kp if len(kp) >= len(k) else k)])
    ax.set_ylabel("test accuracy on real data (%)")
    ax.legend(loc="lower left", fontsize="small")
    return fig


def plot_samples(rows: Sequence[torch.Tensor], labels: Sequence[str], title: str | None = None):
    """One row of generated images per entry of ``rows`` (each ``n x C x H x W``), labelled on the left."""
    import matplotlib.pyplot as plt

    n = max(len(r) for r in rows)
    fig, axes = plt.subplots(len(rows), n, figsize=(0.75 * n + 1.2, 0.8 * len(rows) + 0.3), squeeze=False)
    for i, (images, label) in enumerate(zip(rows, labels)):
        for j in range(n):
            ax = axes[i, j]
            ax.set_xticks([])
            ax.set_yticks([])
            for side in ax.spines.values():
                side.set_visible(False)
            if j < len(images):
                img = images[j]
                img = img[0] if img.dim() == 3 else img
                ax.imshow(img.numpy(), cmap="gray_r")
        axes[i, 0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize="small")
    if title:
        fig.suptitle(title, y=1.0)
    fig.subplots_adjust(wspace=0.05, hspace=0.05)
    return fig


def average_curve(result: Result) -> np.ndarray:
    """Mean accuracy over the tasks seen so far, after each task."""
    R = result.R[:, : len(result.R)]
    return np.array([R[i, : i + 1].mean() for i in range(len(R))])


def plot_curves(results: Mapping[str, Result | Sequence[Result]], ax=None, title: str | None = None):
    """Figure 3's panel: mean accuracy on the tasks so far, per replay mode (several runs: mean and range)."""
    import matplotlib.pyplot as plt

    fig, ax = (ax.figure, ax) if ax is not None else plt.subplots(figsize=(6.5, 4))
    for mode, runs in results.items():
        runs = [runs] if isinstance(runs, Result) else list(runs)
        curves = 100 * np.array([average_curve(r) for r in runs])
        t = np.arange(1, curves.shape[1] + 1)
        ax.plot(t, curves.mean(0), marker="o", ms=4, color=MODE_COLORS.get(mode), label=MODE_LABELS.get(mode, mode))
        if len(runs) > 1:
            ax.fill_between(t, curves.min(0), curves.max(0), color=MODE_COLORS.get(mode), alpha=0.15, lw=0)
    ax.set_xlabel("number of tasks learned")
    ax.set_ylabel("mean accuracy on the tasks so far (%)")
    ax.set_xticks(np.arange(1, curves.shape[1] + 1))
    ax.legend(fontsize="small", loc="lower left")
    if title:
        ax.set_title(title)
    return fig
