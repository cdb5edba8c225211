"""The families comparison (clutils.experiments.expansion.run_families) on a tiny split of digits."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
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


def test_over_seeds_each_seed_is_run_families_and_the_summary_is_its_mean_and_sd():
    settings = tiny(["EWC", "SI", "ER", "PNN"])
    fams = ex.run_families_seeds(settings, "task", [3, 4])
    assert fams.seeds == [3, 4] and fams.methods == ["EWC", "SI", "ER", "PNN"]
    again, _ = ex.run_families(settings, "task", seed=4)
    assert fams.tables[4][["accuracy", "BWT"]].equals(again[["accuracy", "BWT"]])  # a seed's table is run_families'
    long = fams.per_seed()
    assert len(long) == 2 * 4 and set(long.seed) == {3, 4}
    summary = fams.summary()
    assert list(summary.index) == fams.methods and summary.loc["PNN", ("family", "")] == "expansion"
    for method in fams.methods:
        values = fams.values(method, "accuracy")
        assert summary.loc[method, ("accuracy", "mean")] == pytest.approx(np.mean(values))
        assert summary.loc[method, ("accuracy", "sd")] == pytest.approx(np.std(values, ddof=1))
    means = fams.family_means("accuracy")
    assert list(means.index) == [3, 4]
    for s in (3, 4):
        t = fams.tables[s]
        assert means.loc[s, "regularisation"] == pytest.approx((t.loc["EWC", "accuracy"] + t.loc["SI", "accuracy"]) / 2)
        assert means.loc[s, "expansion"] == pytest.approx(t.loc["PNN", "accuracy"])
        assert fams.runs[s]["PNN"][0].R.shape[0] == len(ex.benchmark(settings, seed=s))
    # PNN's and the regularisers' parameter counts do not depend on the seed
    assert fams.identical("parameters added").all()
    assert (fams.family_means("parameters added")["regularisation"] == 0).all()


def _fake(tables_by_seed):
    tables = {s: pd.DataFrame(rows).set_index("method") for s, rows in tables_by_seed.items()}
    return ex.FamilySeeds("task", list(tables), tables, {s: {} for s in tables})


def test_identical_compares_every_seed_and_mean_sd_writes_the_plain_value_only_then():
    row = {"BWT": 0.0, "memory held (KiB)": 1.0, "train s per task": 0.1}
    fams = _fake({0: [{"method": "A", "family": "replay", "accuracy": 50.0, "parameters added": 10, **row},
                      {"method": "B", "family": "expansion", "accuracy": 70.0, "parameters added": 5, **row}],
                  1: [{"method": "A", "family": "replay", "accuracy": 60.0, "parameters added": 10, **row},
                      {"method": "B", "family": "expansion", "accuracy": 70.0, "parameters added": 6, **row}]})
    same = fams.identical("parameters added")
    assert same.to_dict() == {"A": True, "B": False}
    text = ex.mean_sd(fams.summary(), "parameters added", 1, same)
    assert text["A"] == "10.0" and text["B"] == "5.5 ± 0.7"
    assert ex.mean_sd(fams.summary(), "accuracy", 0)["A"] == "55 ± 7"


def test_over_seeds_rejects_repeated_or_missing_seeds():
    settings = tiny(["EWC"])
    with pytest.raises(ValueError, match="differ"):
        ex.run_families_seeds(settings, "task", [0, 0])
    with pytest.raises(ValueError, match="at least one"):
        ex.run_families_seeds(settings, "task", [])
