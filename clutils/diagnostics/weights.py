"""Weight diagnostics of Maltoni & Lomonaco (2019, section 5): how much each layer moves, and how important weights are.

* :class:`WeightChangeTracker` records, after each training batch, the average
  absolute change of the weights of every layer during that batch (Figure 13:
  "to avoid cancellation due to different sign, we compute the average of
  absolute values"). It wraps a strategy's ``before_task``/``after_task`` on the
  instance, so it works with any strategy and the unchanged training loop; the
  weights compared are the ones the model infers with after each batch (for
  CWR, CWR+ and AR1 the consolidated output layer ``cw``).
* :func:`importance_frame` collects the importance snapshots that EWC-SIT,
  SI-SIT and AR1 keep (``strategy.keep_snapshots = 3``): the accumulated ``F``
  and the normalised ``F_hat`` after each of the first batches (Figures 4 and 5).
* :func:`plot_weight_change` and :func:`plot_importance_histograms` draw them.
"""
from __future__ import annotations

import re
from typing import Any, Iterable, Mapping

import numpy as np
import torch
from torch import nn


def layer_groups(model: nn.Module) -> list[tuple[str, list[str]]]:
    """``(label, parameter names)`` of every layer with parameters, input to output.

    Labels: ``conv1, conv2, ...`` for convolutions, ``fc1, fc2, ...`` for linear
    layers below the output, ``bn1, ...`` for normalisation layers and ``output``
    for the output layer(s).
    """
    outputs = {id(m) for m in model.output_layers()} if hasattr(model, "output_layers") else set()
    counters: dict[str, int] = {}
    groups: list[tuple[str, list[str]]] = []
    output_params: list[str] = []
    for path, module in model.named_modules():
        own = [f"{path}.{n}" if path else n for n, _ in module.named_parameters(recurse=False)]
        if not own:
            continue
        if id(module) in outputs:
            output_params += own
            continue
        if isinstance(module, nn.modules.conv._ConvNd):
            kind = "conv"
        elif isinstance(module, nn.Linear):
            kind = "fc"
        elif isinstance(module, (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)):
            kind = "bn"
        else:
            kind = re.sub(r"[^a-z]+", "", type(module).__name__.lower()) or "layer"
        counters[kind] = counters.get(kind, 0) + 1
        groups.append((f"{kind}{counters[kind]}", own))
    if output_params:
        groups.append(("output", output_params))
    return groups


class WeightChangeTracker:
    """Average absolute weight change per layer and batch (Figure 13).

    ``tracker.attach(strategy)`` before ``fit``; afterwards ``tracker.rows`` holds one dict
    per (batch, layer): ``batch`` (1-based), ``layer``, ``change`` (mean ``|theta_after -
    theta_before|`` over the layer's weights and biases) and ``size``.
    """

    def __init__(self, label: str = ""):
        self.label = label
        self.rows: list[dict[str, Any]] = []
        self._before: dict[str, torch.Tensor] | None = None
        self._groups: list[tuple[str, list[str]]] | None = None

    def attach(self, strategy) -> "WeightChangeTracker":
        before_task, after_task = strategy.before_task, strategy.after_task

        def tracked_before(model, task):
            self._before = {n: p.detach().clone() for n, p in model.named_parameters()}
            if self._groups is None:
                self._groups = layer_groups(model)
            before_task(model, task)

        def tracked_after(model, task, data):
            after_task(model, task, data)
            self.record(model, task.index + 1)

        strategy.before_task = tracked_before
        strategy.after_task = tracked_after
        return self

    @torch.no_grad()
    def record(self, model: nn.Module, batch: int) -> None:
        params = dict(model.named_parameters())
        for layer, names in self._groups:
            total = sum(float((params[n].detach() - self._before[n]).abs().sum()) for n in names)
            size = sum(params[n].numel() for n in names)
            self.rows.append({"strategy": self.label, "batch": batch, "layer": layer,
                              "change": total / size, "size": size})

    def frame(self):
        import pandas as pd

        return pd.DataFrame(self.rows)


def weight_change_frame(trackers: Mapping[str, WeightChangeTracker] | Iterable[WeightChangeTracker]):
    """One long DataFrame (strategy, batch, layer, change, size) from several trackers."""
    import pandas as pd

    items = trackers.values() if isinstance(trackers, Mapping) else trackers
    frames = [t.frame() for t in items if t.rows]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(
        columns=["strategy", "batch", "layer", "change", "size"])


def plot_weight_change(frame, strategies: Iterable[str] | None = None, kind: str = "heatmap",
                       log: bool = True, size: float = 2.6):
    """Figure 13: one panel per strategy, layers against batches, colour (or bar height) = mean |change|.

    ``kind="heatmap"`` (default, readable in print) or ``"bars3d"`` (the paper's 3-D histogram).
    All panels share one colour scale (log10 when ``log``), so strategies compare directly.
    """
    import matplotlib.pyplot as plt
    from matplotlib.colors import LogNorm, Normalize

    strategies = list(strategies or dict.fromkeys(frame["strategy"]))
    layers = list(dict.fromkeys(frame["layer"]))
    batches = sorted(frame["batch"].unique())
    values = frame["change"].to_numpy()
    positive = values[values > 0]
    vmin = float(positive.min()) if len(positive) else 1e-8
    vmax = float(values.max()) if len(values) else 1.0
    norm = LogNorm(vmin=max(vmin, vmax * 1e-4), vmax=vmax) if log else Normalize(0, vmax)
    n = len(strategies)
    if kind == "bars3d":
        fig = plt.figure(figsize=(size * 1.4 * n, size * 1.6))
        top = (np.log10(vmax) - np.log10(norm.vmin)) if log else vmax
        for k, name in enumerate(strategies):
            ax = fig.add_subplot(1, n, k + 1, projection="3d")
            part = frame[frame["strategy"] == name]
            for _, row in part.iterrows():
                x, y = layers.index(row["layer"]), batches.index(row["batch"])
                height = np.log10(max(row["change"], norm.vmin)) - np.log10(norm.vmin) if log else row["change"]
                ax.bar3d(x, y, 0, 0.6, 0.6, height, color=plt.cm.viridis(norm(max(row["change"], norm.vmin))),
                         shade=True)
            ax.set_xticks(np.arange(len(layers)) + 0.3)
            ax.set_xticklabels(layers, fontsize="x-small", rotation=45)
            ax.set_yticks(np.arange(len(batches)) + 0.3)
            ax.set_yticklabels([str(b) for b in batches], fontsize="x-small")
            ax.set_ylabel("batch", fontsize="small")
            ax.set_zlim(0, top * 1.05)
            ax.set_zlabel("log10 mean |change| (shifted)" if log else "mean |change|", fontsize="x-small")
            ax.set_title(name)
        return fig
    fig, axes = plt.subplots(1, n, figsize=(size * n + 1.0, 0.45 * len(layers) + 1.4), squeeze=False,
                             sharey=True)
    image = None
    for ax, name in zip(axes[0], strategies):
        part = frame[frame["strategy"] == name]
        grid = np.full((len(layers), len(batches)), np.nan)
        for _, row in part.iterrows():
            grid[layers.index(row["layer"]), batches.index(row["batch"])] = row["change"]
        shown = np.where(grid > 0, grid, np.nan) if log else grid
        image = ax.imshow(shown, aspect="auto", cmap="viridis", norm=norm, origin="upper")
        ax.set_xticks(range(len(batches)))
        ax.set_xticklabels([str(b) for b in batches])
        ax.set_xlabel("after batch")
        ax.set_yticks(range(len(layers)))
        ax.set_yticklabels(layers)
        ax.set_title(name)
        ax.grid(False)
        for i in range(len(layers)):
            for j in range(len(batches)):
                if np.isnan(grid[i, j]):
                    continue
                if grid[i, j] == 0:
                    ax.text(j, i, "0", ha="center", va="center", fontsize="x-small", color="#333333")
    axes[0][0].set_ylabel("layer (input to output)")
    if image is not None:
        bar = fig.colorbar(image, ax=axes[0].tolist(), fraction=0.03, pad=0.02)
        bar.set_label("mean |weight change| in the batch")
    return fig


def importance_frame(strategies: Mapping[str, Any]):
    """Long DataFrame of the importance snapshots: (strategy, batch, kind in {raw, normalised}, values array).

    ``strategies`` maps a label to a strategy object (or a wrapper exposing ``snapshots``)
    that ran with ``keep_snapshots > 0``.
    """
    import pandas as pd

    rows = []
    for label, strategy in strategies.items():
        for snap in getattr(strategy, "snapshots", []):
            for kind in ("raw", "normalised"):
                rows.append({"strategy": label, "batch": snap["batch"], "kind": kind,
                             "values": snap[kind].numpy(), "max_f": float(strategy.hp["max_f"])})
    return pd.DataFrame(rows)


def importance_summary(frame):
    """Per (strategy, kind, batch): share of zeros, of negatives, of saturated values, median of the positive ones."""
    import pandas as pd

    rows = []
    for _, r in frame.iterrows():
        v = r["values"]
        positive = v[v > 0]
        rows.append({
            "strategy": r["strategy"], "kind": r["kind"], "batch": r["batch"],
            "weights": len(v),
            "zero": float((v == 0).mean()),
            "negative": float((v < 0).mean()),
            "saturated": float((v >= r["max_f"] * (1 - 1e-6)).mean()) if r["kind"] == "normalised" else np.nan,
            "median positive": float(np.median(positive)) if len(positive) else np.nan,
            "max": float(v.max()),
        })
    return pd.DataFrame(rows)


def plot_importance_histograms(frame, strategies: Iterable[str] | None = None, bins: int = 60,
                               size: float = 2.8):
    """Figures 4 and 5: histograms of importance values on log axes, one row per (strategy, raw/normalised).

    Columns are the batches. Only positive values can sit on a log axis: the share of
    zeros (and negatives, SI) is written in each panel; the clip value ``max_F`` is a
    dashed line in the normalised rows.
    """
    import matplotlib.pyplot as plt

    from ..style import strategy_color

    strategies = list(strategies or dict.fromkeys(frame["strategy"]))
    batches = sorted(frame["batch"].unique())
    rows = [(s, k) for s in strategies for k in ("raw", "normalised")]
    fig, axes = plt.subplots(len(rows), len(batches), figsize=(size * len(batches), 2.2 * len(rows)),
                             squeeze=False)
    for i, (name, kind) in enumerate(rows):
        part = frame[(frame["strategy"] == name) & (frame["kind"] == kind)]
        values = [v for v in part["values"]]
        positive_all = np.concatenate([v[v > 0] for v in values]) if values else np.array([])
        if len(positive_all):
            lo, hi = np.log10(positive_all.min()), np.log10(positive_all.max())
            edges = np.logspace(lo, hi if hi > lo else lo + 1, bins)
        else:
            edges = np.logspace(-12, 0, bins)
        for j, batch in enumerate(batches):
            ax = axes[i][j]
            sel = part[part["batch"] == batch]
            if sel.empty:
                ax.axis("off")
                continue
            v = sel["values"].iloc[0]
            positive = v[v > 0]
            ax.hist(positive, bins=edges, color=strategy_color(name), alpha=0.85)
            ax.set_xscale("log")
            ax.set_yscale("log")
            if kind == "normalised":
                ax.axvline(sel["max_f"].iloc[0], color="#333333", ls="--", lw=1)
            note = f"zero {100 * (v == 0).mean():.1f}%"
            if (v < 0).any():
                note += f"\nnegative {100 * (v < 0).mean():.1f}%"
            if kind == "normalised":
                note += f"\nat max_F {100 * (v >= sel['max_f'].iloc[0] * (1 - 1e-6)).mean():.2f}%"
            ax.text(0.98, 0.95, note, transform=ax.transAxes, ha="right", va="top", fontsize="x-small")
            if i == 0:
                ax.set_title(f"after batch {batch}")
            if j == 0:
                label = "F (accumulated)" if kind == "raw" else "F_hat (normalised)"
                ax.set_ylabel(f"{name}\n{label}\nweights", fontsize="small")
            if i == len(rows) - 1:
                ax.set_xlabel("importance (log scale)")
    fig.tight_layout()
    return fig
