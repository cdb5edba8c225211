"""Presets of the introduction's notebook (``notebooks/intro_forgetting.ipynb``).

Naive fine-tuning on three benchmarks, one per scenario: permuted MNIST
(domain-incremental), split MNIST with one head per task (task-incremental,
the multi-task "MT" setting of Maltoni and Lomonaco) and split MNIST with one
head over all classes (class-incremental, their "SIT" setting). The sizes and
training settings are those of the permuted- and split-MNIST benchmark
presets (:mod:`clutils.presets.benchmarks`), so the introduction shows
forgetting under the very settings the chapters use.

Keys: ``permuted`` and ``split`` (each a benchmark preset: ``tasks``,
``epochs``, ``batch_size``, ``lr``, ``optimizer``, ``arch``, ``hidden``,
``train_per_class``, ``test_per_class``), ``scenarios`` (the runs to make:
``label -> [benchmark, scenario]``) and ``strategy`` (``naive``).
"""
from __future__ import annotations

from . import PROFILES, define, get

EXPERIMENT = "intro-forgetting"

#: The three runs of the notebook: label -> (benchmark preset, scenario).
SCENARIOS = {
    "domain-incremental": ("permuted-mnist", "domain"),
    "task-incremental": ("split-mnist", "task"),
    "class-incremental": ("split-mnist", "class"),
}


def _profile(profile: str) -> dict:
    return {
        "permuted": get("permuted-mnist", profile),
        "split": get("split-mnist", profile),
        "scenarios": {label: list(spec) for label, spec in SCENARIOS.items()},
        "strategy": "naive",
    }


define(EXPERIMENT, **{profile: _profile(profile) for profile in PROFILES})
