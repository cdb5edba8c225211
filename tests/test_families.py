"""The families comparison (clutils.experiments.expansion.run_families) on a tiny split of digits."""
from __future__ import annotations

import math

import pytest

from clutils import presets
from clutils.experiments import expansion as ex
from clutils.presets.expansion import FAMILY_METHODS
from clutils.strategies import REGISTRY

pytestmark = pytest.mark.usefixtures("one_thread")


def tiny(methods):
    settings = presets.get("expansion-families", "smoke")
    settings.update({"train_per_class": 20, "epochs": 1, "hidden": [16, 16],
                     "methods": {m: FAMILY_METHODS[m] for m in methods}})
    return settings


def test_every_method_of_the_comparison_is_registered_with_a_known_family():
    for label, (family, name, arch) in FAMILY_METHODS.items():
        assert family in ("regularisation", "replay", "expansion"), label
        assert name in REGISTRY, label
        assert REGISTRY[name].model_arch in (None, arch) or arch == "mlp", label


def test_task_incremental_table_measures_memory_parameters_and_bwt():
    settings = tiny(["EWC", "ER", "PNN", "HAT"])
    table, runs = ex.run_families(settings, "task", seed=0)
    assert list(table.index) == ["EWC", "ER", "PNN", "HAT"]
    bench = ex.benchmark(settings, seed=0)
    assert table.loc["PNN", "BWT"] == 0.0
    # parameters added: none for a regulariser or replay; the gates' embeddings for HAT; the extra columns for PNN
    assert table.loc["EWC", "parameters added"] == 0 and table.loc["ER", "parameters added"] == 0
    assert table.loc["HAT", "parameters added"] == len(bench) * sum(settings["hidden"])
    pnn_model = runs["PNN"][1]
    assert table.loc["PNN", "parameters added"] == pnn_model.parameters_used(len(bench)) - ex.plain_parameters(bench, settings["hidden"])
    # memory: EWC keeps an importance and an anchor per parameter; ER at least its images
    n = ex.plain_parameters(bench, settings["hidden"])
    assert table.loc["EWC", "memory held (KiB)"] * 1024 >= 2 * n * 4
    er = runs["ER"][2]
    stored = min(er.hp["buffer_size"], len(bench) * len(bench.tasks[0].train))
    assert table.loc["ER", "memory held (KiB)"] * 1024 >= stored * math.prod(bench.input_shape) * 4
    assert (table["train s per task"] > 0).all()


def test_class_incremental_runs_only_methods_that_can():
    settings = tiny(["EWC", "PNN", "HAT"])
    table, _ = ex.run_families(settings, "class", seed=0)
    assert list(table.index) == ["EWC"]
