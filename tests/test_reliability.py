"""Faults of the training loop end early and clearly: damaged checkpoints, a run directory in
use, concurrent writers, settings that differ on resume, exploding losses, unsupported devices.

Everything runs on the CPU on scikit-learn's ``digits`` with tiny MLPs.
"""
from __future__ import annotations

import os
import subprocess
import sys
import threading
from contextlib import contextmanager

import pytest
import torch

from clutils import cli
from clutils.checkpoint import CheckpointError, RunDirInUseError, read_checkpoint, write_checkpoint
from clutils.data.named import make_benchmark
from clutils.models import build_model
from clutils.result import Result
from clutils.strategies import make
from clutils.train import (CHECKPOINT, DIVERGENCE_CHECK_EVERY, CheckpointMismatchError, TrainConfig,
                           TrainingDivergedError, fit, resolve_device)

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def permuted2():
    """Two permuted-digits tasks of 300 training and 100 test images."""
    return make_benchmark("permuted-mnist", n_tasks=2, dataset="digits", train_per_class=30, test_per_class=10)


def run(benchmark, strategy=None, run_dir=None, **config):
    model = build_model(benchmark, hidden=(32,), seed=0)
    config = TrainConfig(**{"epochs": 1, "batch_size": 64, "progress": False, **config})
    return fit(model, benchmark, strategy or make("naive"), config, device="cpu", run_dir=run_dir)


@pytest.fixture(scope="module")
def finished_run(permuted2, tmp_path_factory):
    """A run directory whose checkpoint holds both tasks, and the checkpoint's bytes."""
    run_dir = tmp_path_factory.mktemp("run")
    run(permuted2, run_dir=run_dir)
    return run_dir, (run_dir / CHECKPOINT).read_bytes()


# ------------------------------------------------------------------ damaged checkpoints


def zero_4k_of_the_weights(raw: bytes) -> bytes:
    middle = len(raw) // 2
    return raw[:middle] + bytes(4096) + raw[middle + 4096:]


DAMAGE = {
    "empty": (lambda raw: b"", "is empty"),
    "truncated": (lambda raw: raw[: len(raw) // 2], "SHA-256"),
    "garbage": (lambda raw: os.urandom(len(raw)), "not a clutils checkpoint"),
    "zeroed 4 KiB": (zero_4k_of_the_weights, "SHA-256"),
    "bare torch.save": (None, "not a clutils checkpoint"),
}


@pytest.mark.parametrize("damage", DAMAGE)
def test_a_damaged_checkpoint_is_refused_naming_the_file(finished_run, permuted2, tmp_path, damage):
    source, raw = finished_run
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    alter, message = DAMAGE[damage]
    if alter is None:  # a checkpoint of the old format, or any file torch can load
        torch.save({"model": {}}, run_dir / CHECKPOINT)
    else:
        (run_dir / CHECKPOINT).write_bytes(alter(raw))
    with pytest.raises(CheckpointError, match=message) as info:
        run(permuted2, run_dir=run_dir)
    assert str(run_dir / CHECKPOINT) in str(info.value) and "Delete it" in str(info.value)


def test_a_checkpoint_missing_a_key_is_refused(permuted2, tmp_path):
    write_checkpoint(tmp_path / CHECKPOINT, {"fingerprint": "0", "model": {}})
    with pytest.raises(CheckpointError, match="lacks settings, optimizer, strategy, result, rng"):
        run(permuted2, run_dir=tmp_path)


def test_an_intact_checkpoint_resumes(finished_run, permuted2):
    run_dir, raw = finished_run
    state = read_checkpoint(run_dir / CHECKPOINT, "cpu")
    assert len(state["result"]["accuracy_matrix"]) == 2
    assert run(permuted2, run_dir=run_dir).tasks_done == 2


# -------------------------------------------------------------- settings that differ


def test_resume_names_the_settings_that_differ(finished_run, permuted2):
    run_dir, _ = finished_run
    with pytest.raises(CheckpointMismatchError) as info:
        run(permuted2, make("si", c=0.5), run_dir=run_dir, lr=2e-3)
    message = str(info.value)
    assert "config.lr: 0.001 then, 0.002 now" in message
    assert "strategy.name: 'naive' then, 'si' now" in message
    assert "strategy.hyperparameters.c: absent then, 0.5 now" in message
    assert "config.epochs" not in message  # only what differs


# ------------------------------------------------------------- one run per directory


@contextmanager
def held_by_another_process(run_dir):
    """Another process holding ``run_dir`` until the block ends; yields its process id."""
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, pathlib\nfrom clutils.checkpoint import locked\n"
         f"with locked(pathlib.Path({str(run_dir)!r})):\n    print('held', flush=True)\n    sys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        yield holder.pid
    finally:
        holder.communicate("", timeout=60)


def test_a_second_run_into_a_locked_run_dir_names_the_process(permuted2, tmp_path):
    with held_by_another_process(tmp_path) as pid:
        with pytest.raises(RunDirInUseError, match=f"in use by process {pid}"):
            run(permuted2, run_dir=tmp_path)
        assert not (tmp_path / CHECKPOINT).exists()
    assert run(permuted2, run_dir=tmp_path).tasks_done == 2  # free again once the holder exits


def test_the_command_line_exits_1_for_a_run_dir_in_use(tmp_path, capsys):
    argv = ["run", "--benchmark", "split-mnist", "--dataset", "digits", "--profile", "smoke", "--no-progress",
            "--tasks", "2", "--run-dir", str(tmp_path)]
    with held_by_another_process(tmp_path) as pid:
        assert cli.main(argv) == 1
    err = capsys.readouterr().err
    assert f"in use by process {pid}" in err and "Traceback" not in err


def test_concurrent_writers_of_one_result_file_never_collide(tmp_path):
    result = Result(config={}, benchmark={}, strategy={},
                    accuracy_matrix=[[0.5] * 200 for _ in range(200)])  # about 1 MB of JSON
    path = tmp_path / "result.json"
    errors = []

    def write():
        try:
            for _ in range(5):
                result.save(path)
        except Exception as error:  # noqa: BLE001 - any failure of a writer fails the test
            errors.append(error)

    threads = [threading.Thread(target=write) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert Result.load(path).accuracy_matrix == result.accuracy_matrix
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]  # no temporary file left


# ----------------------------------------------------------------------- divergence


def test_an_exploding_loss_is_caught_within_the_epoch(permuted2):
    steps = 300 // 4  # 75 steps in the epoch; the first check is at step 50
    assert steps > DIVERGENCE_CHECK_EVERY
    with pytest.raises(TrainingDivergedError) as info:
        run(permuted2, make("naive"), lr=1e6, batch_size=4)
    message = str(info.value)
    assert "exploded" in message and f"task 1, epoch 1, step {DIVERGENCE_CHECK_EVERY} of {steps}" in message
    assert "Naive()" in message and "learning rate" in message


def test_a_sane_run_is_not_flagged(permuted2):
    assert run(permuted2, make("naive"), lr=1e-3, batch_size=4).tasks_done == 2


# -------------------------------------------------------------------- devices and lr


@pytest.mark.parametrize("device", ["mps", "meta", "xpu"])
def test_devices_the_loop_does_not_support_are_refused(device):
    with pytest.raises(ValueError, match="not supported"):
        resolve_device(device)


def test_learning_rates_that_overflow_float32_are_refused():
    with pytest.raises(ValueError, match="at most"):
        TrainConfig(lr=1e300)
    with pytest.raises(ValueError, match="at most"):
        TrainConfig(lr=float("inf"))


def test_ctrl_c_while_loading_data_exits_130_without_a_traceback(monkeypatch, capsys):
    import clutils.data.named

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(clutils.data.named, "make_benchmark", interrupted)
    argv = ["run", "--benchmark", "split-mnist", "--dataset", "digits", "--profile", "smoke", "--no-progress"]
    try:
        status = cli.main(argv)
    except KeyboardInterrupt:
        pytest.fail("Ctrl-C escaped as a traceback")
    assert status == 130 and "interrupted" in capsys.readouterr().err
