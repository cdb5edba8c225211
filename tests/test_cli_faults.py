"""``python -m clutils run`` over a table of bad inputs: each ends with its exit status and a
message that names the problem, never with a Python traceback.

Exit 2 (bad arguments, before any data is loaded or any step is trained) for what a user
types; exit 1 for a damaged file in the data root or the run directory, and for a run
that diverges. Each row is a real subprocess on scikit-learn's digits or a small fixture.
"""
from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from clutils.data.idx import write_idx

SMOKE = ["run", "--benchmark", "split-mnist", "--dataset", "digits", "--profile", "smoke", "--no-progress",
         "--tasks", "2"]


class RunsCode:
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.fixture(scope="module")
def places(tmp_path_factory) -> dict[str, str]:
    """Files and folders the table's rows point at."""
    base = tmp_path_factory.mktemp("faults")
    afile = base / "a-file"
    afile.write_text("not a folder")

    def idx_root(name: str, labels=None, truncate: bool = False) -> Path:
        folder = base / name / "FashionMNIST" / "raw"
        folder.mkdir(parents=True)
        rng = np.random.default_rng(0)
        y = np.arange(100) % 10 if labels is None else labels
        write_idx(folder / "train-images-idx3-ubyte", rng.integers(0, 256, (100, 28, 28), dtype=np.uint8))
        write_idx(folder / "train-labels-idx1-ubyte", y.astype(np.uint8))
        write_idx(folder / "t10k-images-idx3-ubyte", rng.integers(0, 256, (50, 28, 28), dtype=np.uint8))
        write_idx(folder / "t10k-labels-idx1-ubyte", (np.arange(50) % 10).astype(np.uint8))
        if truncate:
            images = folder / "train-images-idx3-ubyte"
            images.write_bytes(images.read_bytes()[:5000])
        return base / name

    labels = np.arange(100) % 10
    labels[::7] = 200
    cifar = base / "cifar" / "cifar-10-batches-py"
    cifar.mkdir(parents=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch", "batches.meta"]:
        (cifar / name).write_bytes(pickle.dumps(RunsCode(str(base / "the-pickle-ran"))))
    result_folder, lock_folder = base / "result-folder-run", base / "lock-folder-run"
    (result_folder / "result.json").mkdir(parents=True)
    (lock_folder / ".lock").mkdir(parents=True)
    os.mkfifo(base / "a-pipe")
    garbage, empty = base / "garbage-run", base / "empty-run"
    garbage.mkdir()
    (garbage / "checkpoint.pt").write_bytes(os.urandom(4096))
    empty.mkdir()
    (empty / "checkpoint.pt").write_bytes(b"")
    return {"file": str(afile), "dir": str(base), "pipe": str(base / "a-pipe"), "truncated_idx": str(idx_root("truncated", truncate=True)),
            "bad_labels": str(idx_root("labels", labels=labels)), "cifar": str(base / "cifar"),
            "garbage_run": str(garbage), "result_folder_run": str(result_folder),
            "lock_folder_run": str(lock_folder), "missing_classes": str(idx_root("classes", labels=np.arange(100) % 5)), "empty_run": str(empty), "marker": str(base / "the-pickle-ran")}


TABLE = [
    # (extra arguments, exit status, words the message must hold)
    (["--strategy", "ewc", "--set", "lam=abc"], 2, ["lam must be a number", "'abc'"]),
    (["--strategy", "si", "--set", "c=nan"], 2, ["c must be a finite number"]),
    (["--strategy", "ewc", "--set", "lam=inf"], 2, ["lam must be a finite number"]),
    (["--strategy", "ewc", "--set", "lam=-100"], 2, ["lam must be zero or positive"]),
    (["--strategy", "si", "--set", "xi=0"], 2, ["xi must be positive"]),
    (["--device", "mps"], 2, ["--device mps", "not supported", "auto, cpu"]),
    (["--device", "meta"], 2, ["--device meta", "not supported"]),
    (["--seed", "-1"], 2, ["--seed", "0..4294967295"]),
    (["--seed", str(2 ** 64)], 2, ["--seed", "0..4294967295"]),
    (["--lr", "1e300"], 2, ["--lr", "at most 1e+30"]),
    (["--benchmark", "permuted-mnist", "--tasks", "10000000"], 2, ["10000000 permuted tasks", "GiB"]),
    (["--json", "{file}/out.json"], 2, ["--json", "is a file, not a folder"]),
    (["--json", "/proc/out.json"], 2, ["--json", "cannot write in /proc"]),
    (["--json", "{dir}"], 2, ["--json", "is a folder"]),
    (["--json", "{pipe}"], 2, ["--json", "is not a regular file"]),
    (["--run-dir", "{file}"], 2, ["--run-dir", "is a file, not a folder"]),
    (["--root", "{file}"], 2, ["--root", "is a file, not a folder"]),
    (["--dataset", "fashion-mnist", "--offline", "--root", "{truncated_idx}"], 1,
     ["bad data file", "train-images-idx3-ubyte", "truncated"]),
    (["--dataset", "fashion-mnist", "--offline", "--root", "{bad_labels}"], 1,
     ["15 of 100 training labels lie outside 0..9", "train-labels-idx1-ubyte"]),
    (["--dataset", "cifar10", "--offline", "--root", "{cifar}"], 1,
     ["is not the original CIFAR file", "was not unpickled"]),
    (["--run-dir", "{result_folder_run}"], 2, ["--run-dir", "result.json is a folder"]),
    (["--dataset", "fashion-mnist", "--offline", "--root", "{missing_classes}"], 1,
     ["no training samples of classes 5, 6, 7, 8, 9"]),
    (["--run-dir", "{lock_folder_run}"], 1, ["cannot lock the run directory", ".lock"]),
    (["--run-dir", "{garbage_run}"], 1, ["checkpoint.pt", "not a clutils checkpoint", "Delete it"]),
    (["--run-dir", "{empty_run}"], 1, ["checkpoint.pt", "is empty", "Delete it"]),
    (["--lr", "1e6"], 1, ["the loss exploded", "task 2, epoch 1, step 1", "Naive()"]),
]


@pytest.mark.parametrize("extra, status, words", TABLE, ids=[" ".join(row[0]) for row in TABLE])
def test_bad_input_ends_with_its_status_and_message_and_no_traceback(places, extra, status, words, tmp_path):
    argv = [*SMOKE, *[arg.format(**places) for arg in extra]]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CLUTILS_DEBIAN_DATASETS": str(tmp_path),
           "CLUTILS_DATA": str(tmp_path / "data")}
    proc = subprocess.run([sys.executable, "-m", "clutils", *argv], capture_output=True, text=True,
                          timeout=300, env=env)
    output = proc.stdout + proc.stderr
    assert "Traceback" not in output, output
    assert proc.returncode == status, output
    for word in words:
        assert word in proc.stderr, f"{word!r} missing from: {proc.stderr}"
    if status == 2:
        assert "usage:" in proc.stderr  # argument errors show the usage
    else:
        assert "usage:" not in proc.stderr  # a damaged file is no usage error
    assert not Path(places["marker"]).exists()  # no pickle from the data root was run


@pytest.mark.parametrize("strategy, network", [("pnn", "pnn-mlp"), ("pnn", "pnn-conv"), ("den", "den-mlp"),
                                               ("hat", "hat-mlp")])
def test_a_strategy_with_its_own_network_is_not_sent_to_the_mlp(strategy, network, tmp_path):
    """HAT, PNN and DEN need their own task-incremental networks: the error names the scenario, not --arch mlp."""
    argv = [*SMOKE, "--strategy", strategy, "--scenario", "class", *(["--arch", network] if network == "pnn-conv" else [])]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CLUTILS_DATA": str(tmp_path / "data")}
    proc = subprocess.run([sys.executable, "-m", "clutils", *argv], capture_output=True, text=True,
                          timeout=300, env=env)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert f"cannot build a {network}" in proc.stderr and "task-incremental" in proc.stderr, proc.stderr
    assert "try --arch mlp" not in proc.stderr, proc.stderr
