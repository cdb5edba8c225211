"""The command line: ``list``, an end-to-end ``run`` on digits, and every bad argument.

Runs ``clutils.cli.main`` in-process (pytest's capsys, SystemExit) plus one real
``python -m clutils list`` subprocess.
"""
from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
import torch

from clutils import cli
from clutils.data import datasets as datasets_mod
from clutils.data.datasets import DatasetUnavailableError, dataset_names
from clutils.data.named import BENCHMARKS, benchmark_names
from clutils.presets import PROFILES
from clutils.strategies import REGISTRY, strategy_names

SMOKE = ["run", "--benchmark", "split-mnist", "--dataset", "digits", "--profile", "smoke", "--no-progress"]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def no_data(monkeypatch):
    """Every loader fails: usage errors must be found before any data is loaded."""
    def refuse(*args, **kwargs):
        raise AssertionError("no data should be loaded for a usage error")

    monkeypatch.setattr(datasets_mod, "LOADERS", {name: refuse for name in datasets_mod.LOADERS})


def usage_error(argv, capsys) -> str:
    """Run ``main(argv)``, expect exit status 2, return stderr."""
    with pytest.raises(SystemExit) as info:
        cli.main(argv)
    assert info.value.code == 2
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    assert "usage:" in captured.err
    return captured.err


# --------------------------------------------------------------------------- list


def test_list_names_everything(capsys):
    assert cli.main(["list"]) == 0
    out = capsys.readouterr().out
    for name in benchmark_names():
        assert name in out and BENCHMARKS[name].description in out
    for name in dataset_names():
        assert name in out
    for name in strategy_names():
        assert name in out
        for hp, default in REGISTRY[name].defaults.items():
            assert f"{hp}={default!r}" in out
    for profile in PROFILES:
        assert profile in out
    assert "c=0.1" in out and "xi=0.1" in out  # SI's hyperparameters


def test_python_dash_m_clutils_list():
    proc = subprocess.run([sys.executable, "-m", "clutils", "list"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "permuted-mnist" in proc.stdout and "digits" in proc.stdout and "si" in proc.stdout
    assert "Traceback" not in proc.stderr


def test_help_documents_the_exit_status(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["run", "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "exit status" in out and "1 the run failed" in out and "2 bad arguments" in out


# ---------------------------------------------------------------------------- run


def test_smoke_run_end_to_end(tmp_path, capsys):
    out_json = tmp_path / "out.json"
    assert cli.main([*SMOKE, "--json", str(out_json)]) == 0
    out = capsys.readouterr().out
    for word in ("Accuracy matrix", "after T1", "after T5", "ACC", "BWT", "FWT", "Forgetting"):
        assert word in out
    data = json.loads(out_json.read_text())
    R = data["accuracy_matrix"]
    assert len(R) == 5 and all(len(row) == 5 for row in R)
    assert all(0.0 <= v <= 1.0 for row in R for v in row)
    assert set(data["metrics"]) == {"acc", "bwt", "fwt", "forgetting"}
    assert 0.0 <= data["metrics"]["acc"] <= 1.0
    # the smoke profile of split-mnist
    config = data["config"]
    assert config["epochs"] == 1 and config["batch_size"] == 256 and config["hidden"] == [64]
    assert config["profile"] == "smoke" and config["dataset"] == "digits" and config["train_per_class"] == 50
    assert data["strategy"] == {"name": "naive", "hyperparameters": {}}
    assert data["benchmark"]["tasks"] == 5 and data["benchmark"]["test_sizes"] == [40] * 5
    # the table shows the matrix as percentages
    assert f"{100 * R[0][0]:.2f}" in out


def test_flags_override_the_profile(tmp_path, capsys):
    out_json = tmp_path / "out.json"
    argv = ["run", "--benchmark", "permuted-mnist", "--dataset", "digits", "--profile", "smoke",
            "--strategy", "si", "--set", "c=0.5", "--set", "xi=1e-3", "--tasks", "2", "--epochs", "2",
            "--batch-size", "32", "--lr", "0.01", "--hidden", "16,8", "--train-per-class", "10",
            "--test-per-class", "5", "--seed", "3", "--device", "cpu", "--confusion", "--no-progress",
            "--json", str(out_json)]
    assert cli.main(argv) == 0
    data = json.loads(out_json.read_text())
    assert data["strategy"] == {"name": "si", "hyperparameters": {"c": 0.5, "xi": 0.001, "omega_relu": "sum"}}
    config = data["config"]
    assert (config["epochs"], config["batch_size"], config["lr"], config["seed"]) == (2, 32, 0.01, 3)
    assert config["hidden"] == [16, 8] and config["device"] == "cpu"
    assert data["benchmark"]["tasks"] == 2 and data["benchmark"]["train_sizes"] == [100, 100]
    assert len(data["accuracy_matrix"]) == 2
    assert len(data["confusion"]) == 2 and sum(map(sum, data["confusion"][-1])) == 2 * 50
    captured = capsys.readouterr()
    assert "si (c=0.5, xi=0.001" in captured.out
    # the flags leave the recipe SI's hyperparameters were tuned for: a warning names them
    assert "warning: --lr 0.01 (recipe: 0.001), --batch-size 32 (recipe: 256)" in captured.err
    assert "alasso chapter" in captured.err


def test_run_dir_resumes_and_refuses_other_settings(tmp_path, capsys):
    run_dir = tmp_path / "run"
    first = tmp_path / "first.json"
    second = tmp_path / "second.json"
    assert cli.main([*SMOKE, "--run-dir", str(run_dir), "--json", str(first)]) == 0
    assert (run_dir / "checkpoint.pt").exists()
    assert cli.main([*SMOKE, "--run-dir", str(run_dir), "--json", str(second)]) == 0  # nothing left to train
    assert json.loads(first.read_text())["accuracy_matrix"] == json.loads(second.read_text())["accuracy_matrix"]
    capsys.readouterr()
    err = usage_error([*SMOKE, "--run-dir", str(run_dir), "--lr", "0.5"], capsys)
    assert "--run-dir" in err and "other settings" in err


def test_interrupted_run_exits_130_with_a_resume_hint(monkeypatch, tmp_path, capsys):
    import clutils.train

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(clutils.train, "fit", interrupted)
    assert cli.main([*SMOKE, "--run-dir", str(tmp_path / "run")]) == 130
    assert "resume" in capsys.readouterr().err


def test_diverged_training_exits_1(capsys):
    # The penalty overflows from task 2 on; with one step per smoke task the loss shows
    # the NaN weights at task 2's end or task 3's start.
    assert cli.main([*SMOKE, "--strategy", "si", "--set", "c=1e40"]) == 1
    err = capsys.readouterr().err
    assert re.search(r"task [23], epoch 1", err) and "Traceback" not in err


def test_missing_data_exits_1_with_the_loaders_message(monkeypatch, capsys):
    def offline(root=None, download=None, **options):
        raise DatasetUnavailableError("Dataset 'mnist' is not available: no usable files in /nowhere.",
                                      dataset="mnist")

    monkeypatch.setitem(datasets_mod.LOADERS, "mnist", offline)
    argv = ["run", "--benchmark", "split-mnist", "--profile", "smoke", "--no-progress", "--offline"]
    assert cli.main(argv) == 1
    err = capsys.readouterr().err
    assert "Dataset 'mnist' is not available" in err and "--dataset digits" in err
    assert "Traceback" not in err


def test_other_data_loading_failures_exit_1(monkeypatch, capsys):
    def broken(root=None, download=None, **options):
        raise RuntimeError("disk on fire")

    monkeypatch.setitem(datasets_mod.LOADERS, "mnist", broken)
    assert cli.main(["run", "--benchmark", "split-mnist", "--profile", "smoke", "--no-progress"]) == 1
    assert "disk on fire" in capsys.readouterr().err


# ----------------------------------------------------------------- bad arguments

BAD_ARGUMENTS = [
    (["run", "--benchmark", "nope"], benchmark_names()),
    (["run", "--benchmark", "split-mnist", "--dataset", "nope"], dataset_names()),
    (["run", "--benchmark", "split-mnist", "--strategy", "nope"], strategy_names()),
    (["run", "--benchmark", "split-mnist", "--profile", "nope"], list(PROFILES)),
    (["run", "--benchmark", "split-mnist", "--strategy", "si", "--set", "lambda=1"], ["'lambda'", "c (default 0.1)", "xi (default 0.1)"]),
    (["run", "--benchmark", "split-mnist", "--set", "c=1"], ["naive has no hyperparameters"]),
    (["run", "--benchmark", "split-mnist", "--strategy", "si", "--set", "c"], ["name=value"]),
    (["run", "--benchmark", "split-mnist", "--epochs", "0"], ["--epochs", "positive integer"]),
    (["run", "--benchmark", "split-mnist", "--epochs", "-3"], ["--epochs", "positive integer"]),
    (["run", "--benchmark", "split-mnist", "--epochs", "two"], ["--epochs", "positive integer"]),
    (["run", "--benchmark", "split-mnist", "--tasks", "0"], ["--tasks", "positive integer"]),
    (["run", "--benchmark", "split-mnist", "--tasks", "-2"], ["--tasks", "positive integer"]),
    (["run", "--benchmark", "split-mnist", "--batch-size", "0"], ["--batch-size", "positive integer"]),
    (["run", "--benchmark", "split-mnist", "--lr", "0"], ["--lr", "positive"]),
    (["run", "--benchmark", "split-mnist", "--lr", "-0.1"], ["--lr", "positive"]),
    (["run", "--benchmark", "split-mnist", "--hidden", "0,4"], ["--hidden"]),
    (["run", "--benchmark", "split-mnist", "--dataset", "digits", "--tasks", "11"], ["1, 2, 5 or 10"]),
    (["run", "--benchmark", "split-mnist", "--tasks", "3"], ["1, 2, 5 or 10"]),
    (["run", "--benchmark", "split-cifar10-100", "--tasks", "12"], ["11"]),
    (["run", "--benchmark", "split-cifar10-100", "--dataset", "digits"], ["takes no --dataset"]),
    (["run", "--benchmark", "core50-nc", "--tasks", "4"], ["2, 3, 5, 6, 9, 11, 21 or 41"]),
    (["run", "--benchmark", "split-tiny-imagenet", "--tasks", "34"], ["1, 2, 3", "33", "6 classes per task"]),
    (["run", "--benchmark", "split-mnist", "--optimizer", "rmsprop"], ["adam", "sgd"]),
    (["run", "--benchmark", "split-mnist", "--arch", "resnet"], ["mlp", "cifarnet"]),
    (["run", "--benchmark", "split-mnist", "--scenario", "nope"], ["task", "domain", "class"]),
    (["run", "--benchmark", "permuted-mnist", "--scenario", "class"], ["domain"]),
    (["run", "--benchmark", "split-mnist", "--device", "tpu"], ["auto", "cpu"]),
    (["run"], ["--benchmark", "required"]),
    (["train"], ["run", "list"]),
    ([], ["run", "list"]),
]


@pytest.mark.parametrize("argv, expected", BAD_ARGUMENTS, ids=[" ".join(a[1:]) or "-" for a, _ in BAD_ARGUMENTS])
def test_bad_arguments_exit_2_naming_the_valid_values(argv, expected, capsys, no_data):
    err = usage_error(argv, capsys)
    for word in expected:
        assert word in err, f"{word!r} missing from: {err}"


def test_cuda_without_a_gpu_is_a_usage_error(monkeypatch, capsys, no_data):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    err = usage_error(["run", "--benchmark", "split-mnist", "--device", "cuda"], capsys)
    assert "no CUDA GPU" in err and "auto, cpu" in err


def test_too_many_tasks_for_a_dataset_is_caught_before_training(monkeypatch, capsys):
    """A dataset whose class count the CLI does not know: make_benchmark's check, before any step."""
    import clutils.train

    def never(*args, **kwargs):
        raise AssertionError("no training for a usage error")

    monkeypatch.setattr(clutils.train, "fit", never)
    monkeypatch.delitem(cli.DATASET_CLASSES, "digits")
    err = usage_error([*SMOKE, "--tasks", "4"], capsys)
    assert "cannot split 10 classes into 4" in err


# ------------------------------------------------------------------ --set values


@pytest.mark.parametrize("text, value", [
    ("1", 1), ("-2", -2), ("0.1", 0.1), ("1e-3", 0.001), ("true", True), ("False", False),
    ("None", None), ("null", None), ("[1, 2]", [1, 2]), ("(3, 4)", (3, 4)), ("fisher", "fisher"),
])
def test_set_values_are_parsed(text, value):
    parsed = cli.parse_value(text)
    assert parsed == value and type(parsed) is type(value)


# ------------------------------------------------------------- strategy checks


def test_a_strategy_that_refuses_the_benchmark_is_a_usage_error(monkeypatch, capsys):
    from clutils.strategies import Strategy

    class Picky(Strategy):
        name = "picky"
        defaults = {"k": 1}

        def setup(self, model, benchmark):
            super().setup(model, benchmark)
            if benchmark.scenario != "class":
                raise ValueError(f"picky is class-incremental only, {benchmark.name} is {benchmark.scenario}")

    monkeypatch.setitem(REGISTRY, "picky", Picky)
    err = usage_error([*SMOKE, "--strategy", "picky", "--tasks", "2"], capsys)
    assert "picky is class-incremental only" in err and "--scenario class" in err
    assert cli.main([*SMOKE, "--strategy", "picky", "--tasks", "2", "--scenario", "class"]) == 0


@pytest.mark.parametrize("name", strategy_names())
def test_every_strategy_runs_from_the_command_line(name, tmp_path, capsys):
    out_json = tmp_path / "out.json"
    declared = REGISTRY[name].scenarios  # class-incremental where the strategy runs in it
    scenario = "class" if "class" in declared else declared[0]
    argv = [*SMOKE, "--strategy", name, "--scenario", scenario, "--tasks", "2", "--json", str(out_json)]
    assert cli.main(argv) == 0, capsys.readouterr().err
    data = json.loads(out_json.read_text())
    assert data["strategy"]["name"] == name
    assert all(0.0 <= v <= 1.0 for row in data["accuracy_matrix"] for v in row)
