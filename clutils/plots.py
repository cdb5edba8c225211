"""Figures shared by the chapters, drawn from :class:`~clutils.result.Result` objects.

Every function takes an optional matplotlib ``ax`` (or returns a new figure)
and colours strategies with :func:`clutils.style.strategy_color`, so a
strategy has the same colour in every chapter.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns

from .metrics import average_accuracy_curve
from .result import Result
from .style import strategy_color


def _axes(ax, figsize=(6, 4)):
    if ax is None:
        fig, ax = plt.subplots(figsize=figsize)
    return ax.figure, ax


def accuracy_heatmap(result: Result | np.ndarray, ax=None, title: str | None = None, cbar: bool = True):
    """``R[i, j]`` in percent: rows are the task just trained, columns the task tested."""
    R = result.R if isinstance(result, Result) else np.asarray(result)
    fig, ax = _axes(ax, (1.0 + 0.55 * R.shape[1], 0.8 + 0.5 * R.shape[0]))
    labels_x = [str(j + 1) for j in range(R.shape[1])]
    labels_y = [str(i + 1) for i in range(R.shape[0])]
    sns.heatmap(100 * R, ax=ax, vmin=0, vmax=100, cmap="viridis", annot=R.shape[1] <= 12, fmt=".0f",
                xticklabels=labels_x, yticklabels=labels_y, cbar=cbar,
                cbar_kws={"label": "test accuracy (%)"} if cbar else None)
    ax.set_xlabel("evaluated on task")
    ax.set_ylabel("after training task")
    if title:
        ax.set_title(title)
    return fig


def average_accuracy_curves(results: Mapping[str, Result | Sequence[Result]], ax=None, spread: bool = True,
                            title: str | None = None):
    """Mean accuracy over the tasks seen so far, as tasks are added (ALASSO Fig. 5).

    A value of ``results`` may be a list of runs (e.g. class orders): the line is
    their mean and the band their standard deviation. With a single run and
    ``spread``, the band is the standard deviation across the tasks seen so far.
    """
    fig, ax = _axes(ax)
    for name, runs in results.items():
        runs = [runs] if isinstance(runs, Result) else list(runs)
        curves = np.array([average_accuracy_curve(r.R[:, : len(r.R)]) for r in runs])
        mean = 100 * curves.mean(0)
        if len(runs) > 1:
            band = 100 * curves.std(0)
        else:
            R = runs[0].R
            band = 100 * np.array([R[i, : i + 1].std() for i in range(len(R))])
        x = np.arange(1, len(mean) + 1)
        color = strategy_color(name)
        ax.plot(x, mean, marker="o", ms=3, color=color, label=name)
        if spread:
            ax.fill_between(x, mean - band, mean + band, color=color, alpha=0.12, linewidth=0)
    ax.set_xlabel("number of tasks learned")
    ax.set_ylabel("average accuracy on tasks so far (%)")
    ax.set_xticks(np.arange(1, len(mean) + 1))
    ax.legend(loc="lower left", fontsize="small", ncol=2)
    if title:
        ax.set_title(title)
    return fig


def task_accuracy_over_time(results: Mapping[str, Result], tasks: Sequence[int] = (0,), ax=None,
                            title: str | None = None):
    """Accuracy on selected tasks after each training task (ALASSO Fig. 4).

    Line style tells the task apart, colour the strategy.
    """
    fig, ax = _axes(ax)
    styles = ["-", "--", ":", "-."]
    for name, result in results.items():
        R = result.R
        for k, j in enumerate(tasks):
            x = np.arange(j + 1, len(R) + 1)
            ax.plot(x, 100 * R[j:, j], styles[k % len(styles)], color=strategy_color(name),
                    label=f"{name}, task {j + 1}")
    ax.set_xlabel("after training task")
    ax.set_ylabel("test accuracy (%)")
    ax.legend(fontsize="small", ncol=2)
    if title:
        ax.set_title(title)
    return fig


def per_task_curves(result: Result, ax=None, title: str | None = None):
    """One line per task: its accuracy after each training step, from the step it is learned."""
    fig, ax = _axes(ax)
    R = result.R
    colors = sns.color_palette("viridis", R.shape[1])
    for j in range(R.shape[1]):
        x = np.arange(j + 1, len(R) + 1)
        ax.plot(x, 100 * R[j:, j], marker="o", ms=3, color=colors[j], label=f"task {j + 1}")
    ax.set_xlabel("after training task")
    ax.set_ylabel("test accuracy (%)")
    ax.set_ylim(0, 102)
    ax.set_xticks(np.arange(1, len(R) + 1))
    ax.legend(fontsize="small", ncol=2)
    if title:
        ax.set_title(title)
    return fig


def _class_ticks(ax, names: Sequence[str], x: bool, y: bool, fontsize: float) -> None:
    """Class names as tick labels (x: rotated under the matrix, y: left of it); none where not asked.

    Beyond 20 classes only every few classes are labelled (CORe50's 50 would not fit).
    """
    step = int(np.ceil(len(names) / 20))
    ticks = np.arange(0, len(names), step) + 0.5
    shown = list(names)[::step]
    ax.set_xticks(ticks if x else [])
    ax.set_yticks(ticks if y else [])
    if x:
        ax.set_xticklabels(shown, rotation=90, fontsize=fontsize)
    if y:
        ax.set_yticklabels(shown, rotation=0, fontsize=fontsize)
    ax.tick_params(length=0, pad=1)


def _short(name: str, width: int = 10) -> str:
    name = str(name)
    return name if len(name) <= width else name[: width - 1] + "\u2026"


def confusion_rows(rows: Mapping[str, Sequence[np.ndarray]], class_names: Sequence[str] | None = None,
                   titles: Sequence[str] | None = None, groups: Sequence[int] | None = None,
                   size: float = 2.2, vmax: float | None = 1.0, cbar_label: str = "share of the true class",
                   suptitle: str | None = None):
    """Rows of confusion matrices (one row per label, one column per step), with class labels and a colour bar.

    Each matrix is drawn as given (rows: true class, columns: predicted class, already normalised
    and ordered). ``class_names`` label the axes (in the matrices' order; shortened to ten
    characters), on the first column and the last row only; ``groups`` (class counts per batch,
    in that order) draws thin lines between the batches' classes. One colour bar serves every
    panel (a shared scale, ``vmax``: 1 for row-normalised matrices).
    """
    labels = list(rows)
    if not labels or not all(len(rows[label]) for label in labels):
        raise ValueError("no confusion matrices to draw")
    n = max(len(rows[label]) for label in labels)
    k = np.asarray(rows[labels[0]][0]).shape[0]
    names = [_short(c) for c in (class_names if class_names is not None else [str(c) for c in range(k)])]
    if len(names) != k:
        raise ValueError(f"{len(names)} class names for {k} classes")
    fontsize = max(7.0, min(9.0, 24.0 * size / min(k, 20)))
    fig, axes = plt.subplots(len(labels), n, figsize=(size * n + 1.4, size * len(labels) + 0.9), squeeze=False)
    vmax = vmax if vmax is not None else max(float(np.max(m)) for label in labels for m in rows[label])
    image = None
    for r, label in enumerate(labels):
        for i in range(n):
            ax = axes[r][i]
            if i >= len(rows[label]):
                ax.axis("off")
                continue
            image = ax.imshow(np.asarray(rows[label][i], dtype=float), cmap="magma", vmin=0, vmax=vmax,
                              extent=(0, k, k, 0), interpolation="nearest")
            if groups:
                for edge in np.cumsum(groups)[:-1]:
                    ax.axhline(edge, color="#dddddd", lw=0.9)
                    ax.axvline(edge, color="#dddddd", lw=0.9)
            _class_ticks(ax, names, x=r == len(labels) - 1, y=i == 0, fontsize=fontsize)
            ax.grid(False)  # after the ticks: new ticks would bring the theme's grid back
            if r == 0:
                ax.set_title(titles[i] if titles else f"after batch {i + 1}", fontsize="small")
            if i == 0:
                ax.set_ylabel(f"{label}\ntrue class", fontsize="small")
            if r == len(labels) - 1:
                ax.set_xlabel("predicted class", fontsize="small")
    fig.tight_layout(rect=(0, 0, 1 - 0.9 / fig.get_figwidth(), 1))
    bar = fig.add_axes((1 - 0.75 / fig.get_figwidth(), 0.15, 0.15 / fig.get_figwidth(), 0.7))
    fig.colorbar(image, cax=bar, label=cbar_label)
    if suptitle:
        fig.suptitle(suptitle, y=1 + 0.3 / fig.get_figheight())
    return fig


def confusion_grid(matrices: Sequence[np.ndarray] | Result, class_names: Sequence[str] | None = None,
                   ncols: int = 5, normalise: bool = True, titles: Sequence[str] | None = None,
                   suptitle: str | None = None, size: float = 2.2):
    """A grid of confusion matrices, one per training step (AR1 Figs. 10-12), with class labels and a colour bar.

    Rows are true classes, columns predicted ones; with ``normalise`` each row
    sums to one, so a column band shows where predictions go.
    """
    mats = matrices.confusion_matrices() if isinstance(matrices, Result) else np.asarray(matrices)
    if len(mats) == 0:
        raise ValueError("no confusion matrices: train with TrainConfig(record_confusion=True)")
    if class_names is None and isinstance(matrices, Result):
        class_names = matrices.benchmark.get("class_names") or None
    mats = [m.astype(float) / np.clip(m.sum(1, keepdims=True), 1, None) if normalise else m.astype(float)
            for m in mats]
    ncols = min(ncols, len(mats))
    chunks = {"": mats} if len(mats) <= ncols else {
        f"steps {s + 1}-{min(s + ncols, len(mats))}": mats[s:s + ncols] for s in range(0, len(mats), ncols)}
    if titles is None:
        titles = [f"after batch {i + 1}" for i in range(len(mats))]
    fig = confusion_rows(chunks, class_names, titles=titles if len(chunks) == 1 else None, size=size,
                         vmax=1.0 if normalise else None,
                         cbar_label="share of the true class" if normalise else "test images",
                         suptitle=suptitle)
    if len(chunks) > 1:
        for r, ax_row in enumerate(np.asarray(fig.axes[:-1]).reshape(len(chunks), ncols)):
            for i, ax in enumerate(ax_row):
                step = r * ncols + i
                if step < len(mats):
                    ax.set_title(titles[step], fontsize="small")
    return fig


def final_accuracy_bars(results: Mapping[str, Result], ax=None, title: str | None = None):
    """Average accuracy over all tasks after the last one, one bar per strategy."""
    fig, ax = _axes(ax)
    names = list(results)
    values = [100 * results[n].metrics()["acc"] for n in names]
    ax.bar(names, values, color=[strategy_color(n) for n in names])
    for i, v in enumerate(values):
        ax.text(i, v + 1, f"{v:.1f}", ha="center", fontsize="small")
    ax.set_ylabel("final average accuracy (%)")
    ax.set_ylim(0, 105)
    ax.tick_params(axis="x", rotation=30)
    if title:
        ax.set_title(title)
    return fig
