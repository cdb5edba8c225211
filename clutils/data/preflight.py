"""Which datasets a set of experiments needs, checked before anything is trained.

The book build calls :func:`missing_datasets` before it executes a notebook, so a
machine without the papers' data fails within seconds with a way forward, instead of
inside the first notebook minutes later. The datasets come from the presets
themselves: every ``"dataset"`` entry of an experiment's settings, the datasets behind
a named ``"kind"`` of benchmark (CIFAR-10/100, Tiny ImageNet) and MNIST, the default of
the permuted and split benchmarks.
"""
from __future__ import annotations

import re
from typing import Iterable, Mapping

from .. import presets
from .datasets import DatasetUnavailableError, UnknownDatasetError, dataset_names, load_dataset

#: The datasets behind a benchmark ``kind`` whose own ``dataset`` entry is None (the paper's data).
KIND_DATASETS = {
    "cifar10-100": ("cifar10", "cifar100"),
    "split-cifar10-100": ("cifar10", "cifar100"),
    "tiny-imagenet": ("tiny-imagenet",),
}
#: The permuted and split benchmarks' own dataset when a preset names none.
DEFAULT_DATASET = "mnist"
#: Datasets loaded whole to check them; the others (CORe50, Tiny ImageNet: tens of GB decoded)
#: are left to the notebook, whose own error is just as clear, only later.
CHEAP_TO_CHECK = {"digits", "mnist", "fashion-mnist", "cifar10", "cifar100"}

_PRESET_CALL = re.compile(r"""presets\.get\(\s*["']([^"']+)["']""")


def experiments_in(code: str) -> list[str]:
    """The preset names that ``code`` (a notebook's code cells) reads with ``presets.get``."""
    return sorted(set(_PRESET_CALL.findall(code)))


def datasets_in(settings: object) -> set[str]:
    """Every dataset that an experiment's settings name, with benchmark kinds resolved."""
    found: set[str] = set()
    named_any = False

    def walk(node: object) -> None:
        nonlocal named_any
        if isinstance(node, Mapping):
            kind = node.get("kind")
            if node.get("dataset"):
                found.add(str(node["dataset"]))
            elif isinstance(kind, str) and kind in KIND_DATASETS:
                found.update(KIND_DATASETS[kind])
            named_any = named_any or "dataset" in node or (isinstance(kind, str) and kind in KIND_DATASETS)
            for value in node.values():
                walk(value)
        elif isinstance(node, (list, tuple)):
            for value in node:
                walk(value)

    walk(settings)
    return found if named_any else {DEFAULT_DATASET}


def datasets_needed(experiments: Iterable[str], profile: str, override: str | None = None) -> set[str]:
    """The datasets that running ``experiments`` under ``profile`` loads (``override`` replaces them all)."""
    if override:
        return {override}
    needed: set[str] = set()
    for experiment in experiments:
        needed |= datasets_in(presets.get(experiment, profile))
    return needed


def missing_datasets(names: Iterable[str], root=None) -> dict[str, str]:
    """Each dataset of ``names`` that cannot be loaded (after any download), with the reason.

    Datasets outside :data:`CHEAP_TO_CHECK` are not loaded here and never reported.
    """
    missing = {}
    for name in sorted(names):
        if name not in CHEAP_TO_CHECK and name in dataset_names():
            continue
        try:
            load_dataset(name, root=root)
        except (DatasetUnavailableError, UnknownDatasetError) as error:
            missing[name] = str(error)
    return missing


def data_label(settings: object) -> str:
    """The datasets an experiment's settings run on, for scorecards and captions ("mnist")."""
    return "+".join(sorted(datasets_in(settings)))
