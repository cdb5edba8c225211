"""One look for every figure of the book.

* :data:`STRATEGY_COLORS` gives each continual-learning strategy one colour,
  used by every chapter (``strategy_color("ewc")`` is the same blue everywhere).
* :func:`set_theme` applies the seaborn theme the book's figures share.
* :func:`caption` / :func:`add_caption` / :func:`show_caption` say what was run
  (dataset, profile, device, seed) under a figure.

Colours come from the Okabe-Ito and seaborn "colorblind" palettes, so the
strategies stay distinguishable for colour-blind readers.
"""
from __future__ import annotations

import hashlib
from typing import Iterable

#: One colour per strategy for the whole book. Keys are normalised names
#: (see :func:`normalise_strategy`). Baselines are greys/black so that the
#: methods stand out against them.
STRATEGY_COLORS: dict[str, str] = {
    # baselines
    "naive": "#7f7f7f",  # plain fine-tuning (SGD), the forgetting baseline
    "joint": "#000000",  # multi-task / cumulative training, the upper bound
    "frozen": "#b0b0b0",  # SGD-F: frozen feature extractor
    "l2": "#8c564b",
    # regularisation
    "ewc": "#0072b2",
    "si": "#56b4e9",
    "mas": "#009e73",
    "lwf": "#e69f00",
    "alasso": "#d55e00",
    "spp": "#cc79a7",
    "rwalk": "#17becf",
    # architectural / expansion
    "cwr": "#44aa99",
    "cwr+": "#117733",
    "ar1": "#882255",
    "hat": "#332288",
    "pnn": "#999933",
    # replay
    "replay": "#aa4499",
    "der": "#ddcc77",
    "der++": "#bcbd22",
    "gem": "#88ccee",
}

#: The AR1 chapter's ablations (CWR with one of CWR+'s two changes, naive fine-tuning with zero
#: init: Section 3.2, Appendix E) get colours of their own, none of another strategy's, so that a
#: figure never shows an ablation in the colour of the method it is compared with.
AR1_ABLATION_COLORS: dict[str, str] = {
    "cwr-zero-init": "#6b8e23",  # CWR + zero init
    "cwr-mean-shift": "#b8a0d0",  # CWR + mean-shift
    "naive-zero-init": "#3d3d3d",  # naive fine-tuning with a zero output layer
}
STRATEGY_COLORS.update(AR1_ABLATION_COLORS)

#: Spelling variants accepted by :func:`strategy_color`.
ALIASES: dict[str, str] = {
    "finetune": "naive",
    "fine-tune": "naive",
    "fine-tuning": "naive",
    "finetuning": "naive",
    "sgd": "naive",
    "cumulative": "joint",
    "multitask": "joint",
    "sgd-f": "frozen",
    "cwr_plus": "cwr+",
    "cwrplus": "cwr+",
    "cwr-plus": "cwr+",
    "ar1*": "ar1",
    "er": "replay",
    "experience-replay": "replay",
    "derpp": "der++",
    "der_pp": "der++",
}

#: Colours of the three continual-learning scenarios (used by the introduction).
SCENARIO_COLORS: dict[str, str] = {
    "task-incremental": "#0072b2",
    "domain-incremental": "#009e73",
    "class-incremental": "#d55e00",
}

#: Readable names of datasets for captions.
DATASET_LABELS: dict[str, str] = {
    "mnist": "MNIST",
    "fashion-mnist": "Fashion-MNIST",
    "fashion_mnist": "Fashion-MNIST",
    "fmnist": "Fashion-MNIST",
    "cifar10": "CIFAR-10",
    "cifar-10": "CIFAR-10",
    "cifar100": "CIFAR-100",
    "cifar-100": "CIFAR-100",
    "core50": "CORe50",
    "core50-objects": "CORe50",
    "cifar10+cifar100": "CIFAR-10/100",
    "tiny-imagenet": "Tiny ImageNet",
    "digits": "scikit-learn digits",
}

_EXTRA = ["#4477aa", "#ee6677", "#228833", "#ccbb44", "#66ccee", "#aa3377", "#bbbbbb", "#e377c2"]


def normalise_strategy(name: str) -> str:
    key = str(name).strip().lower().replace(" ", "-")
    return ALIASES.get(key, key)


def strategy_color(name: str) -> str:
    """The book-wide colour of strategy ``name`` (a stable fallback for unknown names)."""
    key = normalise_strategy(name)
    if key in STRATEGY_COLORS:
        return STRATEGY_COLORS[key]
    digest = int(hashlib.sha1(key.encode()).hexdigest(), 16)
    return _EXTRA[digest % len(_EXTRA)]


def variant_color(name: str, amount: float) -> str:
    """A shade of strategy ``name``'s colour for a variant of it (an ablation, another setting).

    ``amount`` in (0, 1) mixes the colour with white, in (-1, 0) with black; the
    result keeps the strategy's hue, so a variant reads as "a kind of" its
    strategy without taking another strategy's colour.
    """
    if not -1 < amount < 1:
        raise ValueError(f"amount must lie in (-1, 1), got {amount}")
    base = strategy_color(name).lstrip("#")
    rgb = [int(base[i:i + 2], 16) for i in (0, 2, 4)]
    target = 255 if amount > 0 else 0
    mixed = [round(c + abs(amount) * (target - c)) for c in rgb]
    return "#" + "".join(f"{c:02x}" for c in mixed)


def strategy_palette(names: Iterable[str]) -> dict[str, str]:
    """``{name: colour}`` for seaborn's ``palette=`` argument, keeping the caller's spelling."""
    return {name: strategy_color(name) for name in names}


def dataset_label(name: str | None) -> str:
    if name is None:
        return "the paper's dataset"
    return DATASET_LABELS.get(str(name).lower(), str(name))


def set_theme(context: str = "notebook", font_scale: float = 1.05) -> None:
    """The seaborn theme of every figure in the book (call once per notebook)."""
    import matplotlib as mpl
    import seaborn as sns

    sns.set_theme(context=context, style="whitegrid", font_scale=font_scale)
    mpl.rcParams.update(
        {
            "figure.dpi": 100,
            "savefig.dpi": 100,
            "savefig.bbox": "tight",
            "axes.titleweight": "bold",
            "axes.titlesize": "medium",
            "axes.labelsize": "medium",
            "legend.frameon": False,
            "figure.autolayout": False,
            "image.cmap": "viridis",
        }
    )


def caption(dataset: str | None, profile: str, device: str, seed: int, **extra) -> str:
    """One line that says what was run, e.g. ``Fashion-MNIST · profile quick · cpu · seed 0``."""
    parts = [dataset_label(dataset), f"profile {profile}", f"device {device}", f"seed {seed}"]
    parts += [f"{key.replace('_', ' ')} {value}" for key, value in extra.items()]
    return " · ".join(parts)


def add_caption(fig, text: str, *, fontsize: float = 9.0) -> None:
    """Write ``text`` under everything drawn in ``fig`` (tick labels included).

    The caption is part of the image (saved with ``bbox_inches="tight"``, as the
    notebook's inline backend does), so the book shows it under the figure.
    """
    fig.canvas.draw()
    box = fig.get_tightbbox(fig.canvas.get_renderer())  # inches
    y = box.y0 / fig.get_figheight() - 0.01
    x = max(box.x0 / fig.get_figwidth(), 0.0)
    fig.text(x, y, text, ha="left", va="top", fontsize=fontsize, color="#555555", style="italic")


def show_caption(text: str, title: str | None = None) -> None:
    """Display ``text`` as a caption paragraph in the notebook output."""
    from IPython.display import Markdown, display

    head = f"**{title}** " if title else ""
    display(Markdown(f"{head}*Run: {text}.*"))
