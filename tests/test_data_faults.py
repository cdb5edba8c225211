"""Data files that cannot be trusted are refused, naming the file; nothing in them is executed.

Tampered CIFAR pickles, labels outside the classes, test images of another size, a cache
whose source files changed, a data root that is a file, permuted benchmarks too large for
memory. Small local fixtures, no network.
"""
from __future__ import annotations

import hashlib
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from clutils.data import datasets
from clutils.data.benchmarks import permuted
from clutils.data.datasets import CIFAR, CIFAR_MD5, load_dataset
from clutils.data.errors import DataFileError
from clutils.data.idx import write_idx
from clutils.data.named import make_benchmark
from clutils.data.root import DataRootError, cache_file, data_root

FASHION = "FashionMNIST/raw"


@pytest.fixture
def root(monkeypatch, tmp_path):
    """An empty data root; no Debian datasets, no CLUTILS_DATA."""
    monkeypatch.delenv("CLUTILS_DATA", raising=False)
    (tmp_path / "no-debian").mkdir()
    monkeypatch.setenv(datasets.DEBIAN_ENV_VAR, str(tmp_path / "no-debian"))
    return tmp_path / "data"


def write_idx_dataset(folder: Path, train_labels=None, test_size: int = 28) -> None:
    """The four IDX files of a 20 + 10 image dataset of ten classes."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    labels = np.arange(20) % 10 if train_labels is None else np.asarray(train_labels)
    write_idx(folder / "train-images-idx3-ubyte.gz", rng.integers(0, 256, (20, 28, 28), dtype=np.uint8))
    write_idx(folder / "train-labels-idx1-ubyte.gz", labels.astype(np.uint8))
    write_idx(folder / "t10k-images-idx3-ubyte.gz", rng.integers(0, 256, (10, test_size, test_size), dtype=np.uint8))
    write_idx(folder / "t10k-labels-idx1-ubyte.gz", (np.arange(10) % 10).astype(np.uint8))


# ------------------------------------------------------------------------ CIFAR


class RunsCode:
    """A pickle that, when loaded, creates the file ``marker`` (as any command could run)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def write_cifar10(folder: Path, labels_of_batch_1=None) -> dict[str, str]:
    """Small CIFAR-10 python-version files (4 images a batch); their MD5s by file name."""
    folder.mkdir(parents=True, exist_ok=True)
    train, test, meta, label_key, names_key = CIFAR["cifar10"]
    rng = np.random.default_rng(0)
    for i, name in enumerate(train + test):
        labels = [0, 1, 2, 3] if i or labels_of_batch_1 is None else labels_of_batch_1
        batch = {"data": rng.integers(0, 256, (4, 3 * 32 * 32), dtype=np.uint8), label_key: labels}
        (folder / name).write_bytes(pickle.dumps(batch))
    (folder / meta).write_bytes(pickle.dumps({names_key: [f"class {i}" for i in range(10)]}))
    return {name: hashlib.md5((folder / name).read_bytes()).hexdigest() for name in [*train, *test, meta]}


def test_a_tampered_cifar_file_is_refused_before_unpickling(root, tmp_path):
    folder = root / "cifar-10-batches-py"
    write_cifar10(folder)
    marker = tmp_path / "the-pickle-ran"
    (folder / "data_batch_1").write_bytes(pickle.dumps(RunsCode(marker)))
    with pytest.raises(DataFileError, match="data_batch_1 is not the original CIFAR file") as info:
        load_dataset("cifar10", root=root, download=False)
    assert not marker.exists()
    assert "download CIFAR again" in str(info.value)


def test_the_known_cifar_checksums_are_declared_for_every_file():
    for name, (train, test, meta, *_) in CIFAR.items():
        assert set(CIFAR_MD5[name]) == {*train, *test, meta}
        assert all(len(md5) == 32 and int(md5, 16) >= 0 for md5 in CIFAR_MD5[name].values())


def test_cifar_files_that_match_their_checksums_load(root, monkeypatch):
    md5 = write_cifar10(root / "cifar-10-batches-py")
    monkeypatch.setitem(CIFAR_MD5, "cifar10", md5)  # our small stand-ins are "the original" here
    dataset = load_dataset("cifar10", root=root, download=False)
    assert (len(dataset.train), len(dataset.test), dataset.input_shape) == (20, 4, (3, 32, 32))
    assert dataset.class_names[3] == "class 3"


def test_cifar_labels_outside_the_classes_name_the_batch_files(root, monkeypatch):
    md5 = write_cifar10(root / "cifar-10-batches-py", labels_of_batch_1=[0, 200, 1, 200])
    monkeypatch.setitem(CIFAR_MD5, "cifar10", md5)
    with pytest.raises(DataFileError, match=r"2 of 20 training labels lie outside 0\.\.9 \(.*data_batch_1"):
        load_dataset("cifar10", root=root, download=False)


# ------------------------------------------------------------------------ IDX files


def test_labels_outside_the_classes_are_an_error_naming_the_file_and_the_count(root):
    labels = np.arange(20) % 10
    labels[::7] = 200  # 3 of 20
    write_idx_dataset(root / FASHION, train_labels=labels)
    with pytest.raises(DataFileError) as info:
        load_dataset("fashion-mnist", root=root, download=False)
    message = str(info.value)
    assert "3 of 20 training labels lie outside 0..9" in message
    assert str(root / FASHION / "train-labels-idx1-ubyte.gz") in message


def test_test_images_of_another_size_are_an_error_at_load_time(root):
    write_idx_dataset(root / FASHION, test_size=20)
    with pytest.raises(DataFileError, match=r"test images are 1x20x20 .*t10k-images.* but training images 1x28x28"):
        load_dataset("fashion-mnist", root=root, download=False)


def test_the_cache_is_rebuilt_when_a_source_file_changes(root):
    folder = root / FASHION
    write_idx_dataset(folder)
    first = load_dataset("fashion-mnist", root=root, download=False)
    assert cache_file(root, "fashion-mnist").is_file()
    relabelled = (np.arange(20) + 1) % 10  # same size, other content
    label_file = folder / "train-labels-idx1-ubyte.gz"
    before = label_file.stat().st_mtime_ns
    write_idx(label_file, relabelled.astype(np.uint8))
    os.utime(label_file, ns=(before + 10**9, before + 10**9))  # a later modification time, whatever the clock
    with pytest.warns(UserWarning, match="rebuilding the cache"):
        second = load_dataset("fashion-mnist", root=root, download=False)
    assert torch.equal(second.train.y, torch.from_numpy(relabelled).long())
    assert not torch.equal(first.train.y, second.train.y)


def test_an_unchanged_source_keeps_the_cache(root, monkeypatch):
    write_idx_dataset(root / FASHION)
    load_dataset("fashion-mnist", root=root, download=False)

    def no_decoding(*args, **kwargs):
        raise AssertionError("the cache should have been used")

    monkeypatch.setattr(datasets, "_read_idx_split", no_decoding)
    assert len(load_dataset("fashion-mnist", root=root, download=False).train) == 20


def test_a_cache_without_its_tensors_is_rebuilt_from_the_files(root):
    write_idx_dataset(root / FASHION)
    cache_file(root, "fashion-mnist").parent.mkdir(parents=True)
    torch.save({"x": 1}, cache_file(root, "fashion-mnist"))  # loads with weights_only, but is no dataset
    with pytest.warns(UserWarning, match="lacks the tensors"):
        dataset = load_dataset("fashion-mnist", root=root, download=False)
    assert len(dataset.train) == 20


def test_a_dataset_whose_files_lack_classes_is_a_data_error(root):
    write_idx_dataset(root / FASHION, train_labels=np.arange(20) % 5)  # classes 5-9 have no training image
    with pytest.raises(DataFileError, match=r"no training samples of classes 5, 6, 7, 8, 9 \(task 2"):
        make_benchmark("split-mnist", n_tasks=2, dataset="fashion-mnist", root=root, download=False)


# --------------------------------------------------------------- root and memory


def test_a_data_root_that_is_a_file_is_a_clear_error(tmp_path, monkeypatch):
    afile = tmp_path / "not-a-folder"
    afile.write_text("x")
    with pytest.raises(DataRootError, match="is a file, not a folder"):
        data_root(afile)
    monkeypatch.setenv("CLUTILS_DATA", str(afile))
    with pytest.raises(DataRootError, match=r"\$CLUTILS_DATA"):
        load_dataset("fashion-mnist", download=False)


def test_permuted_tasks_beyond_memory_are_refused_before_any_allocation():
    digits = load_dataset("digits")
    with pytest.raises(ValueError, match=r"10000000 permuted tasks of digits need .* GiB"):
        permuted(digits, 10_000_000)
    assert len(permuted(digits, 2)) == 2
