"""SVHN, STL-10, Caltech-101 and notMNIST: the natural-image datasets of the SPP paper's Figures 3 and 9.

Peng et al. train VGG9 on MNIST, notMNIST, SVHN, STL-10 and CIFAR-10 in this order, "all RGB images
with the same size of 32*32 pixels" (Figure 3), and ResNet-18 on Caltech-101 "resized to [224,224,3]"
(Figure 9, supplementary section 6). The loaders here decode the original files into uint8 tensors
(N x 3 x H x W), resized as the paper states, and cache them under the data root like every other
dataset (:func:`clutils.data.datasets.cached`):

* ``svhn``: Netzer et al. 2011, the cropped digits, ``train_32x32.mat`` and ``test_32x32.mat``
  (MATLAB files: ``X`` is 32 x 32 x 3 x N, ``y`` holds 1..10 with 10 for the digit 0); already 32 x 32.
* ``stl10``: Coates et al. 2011, ``stl10_binary.tar.gz`` (binary files, each image 3 x 96 x 96 stored
  column-major, labels 1..10); the 5,000 labelled training and 8,000 test images (the 100,000
  unlabelled ones are not read), downscaled to ``size`` = 32 (the paper) with antialiasing.
* ``caltech101``: Fei-Fei et al. 2004, ``caltech-101.zip`` (which holds ``101_ObjectCategories.tar.gz``):
  one folder of JPEGs per category. The paper's four tasks of 30, 25, 25 and 22 classes add up to
  102, so the ``BACKGROUND_Google`` folder counts as a class here. The dataset has no test split: the
  paper divides each task 7:3; here every image whose index within its class is 0, 1 or 2 modulo 10
  is a test image (30 %), deterministic. Resized to ``size`` = 224 (the paper; its aspect ratio is not
  kept, as the paper's [224, 224, 3] implies).
* ``notmnist``: Bulatov 2011, letters A-J in many fonts. **No stable public source with a checksum
  exists** (the author's blog links an archive that has moved more than once), so nothing is
  downloaded: the loader reads a ``notMNIST_small/<A..J>/*.png`` folder that the reader puts under
  the data root and otherwise says so. Decoded as RGB at 32 x 32 (the paper); every fifth image of
  each letter is a test image. Files PIL cannot read (the archive holds a few empty ones) are skipped.

Each download checks the MD5 the dataset's authors publish (the same checksums torchvision checks) and
shows a progress bar (:func:`clutils.data.download.download_file`).
"""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from .datasets import cached, decode_images, to_dataset, unavailable
from .download import download_file, extract_archive, file_hash
from .errors import DataFileError
from .root import data_root

SVHN_FILES = {  # split: (URL, file name, MD5)
    "train": ("http://ufldl.stanford.edu/housenumbers/train_32x32.mat", "train_32x32.mat",
              "e26dedcc434d2e4c54c9b2d4a06d8373"),
    "test": ("http://ufldl.stanford.edu/housenumbers/test_32x32.mat", "test_32x32.mat",
             "eb5a983be6a315427106f1b164d9cef3"),
}
SVHN_FOLDER = "svhn"

STL10_URL = "http://ai.stanford.edu/~acoates/stl10/stl10_binary.tar.gz"
STL10_MD5 = "91f7769df0f17e558f3565bffb0c7dfb"
STL10_FOLDER = "stl10_binary"
STL10_FILES = {"x_train": ("train_X.bin", "918c2871b30a85fa023e0c44e0bee87f"),
               "y_train": ("train_y.bin", "5a34089d4802c674881badbb80307741"),
               "x_test": ("test_X.bin", "7f263ba9f9e0b06b93213547f721ac82"),
               "y_test": ("test_y.bin", "36f9794fa4beb8a2c72628de14fa638e")}
STL10_CLASSES = ("airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck")
STL10_SIDE = 96

CALTECH_URL = "https://data.caltech.edu/records/mzrjq-6wc02/files/caltech-101.zip"
CALTECH_MD5 = "3138e1922a9193bfa496528edbbc45d0"
CALTECH_FOLDER = "101_ObjectCategories"
CALTECH_TEST_RESIDUES = (0, 1, 2)  # image index within its class modulo 10: a test image (30 %)

NOTMNIST_FOLDER = "notMNIST_small"
NOTMNIST_LETTERS = tuple("ABCDEFGHIJ")

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png"}


# ------------------------------------------------------------------ helpers


def resize_uint8(x: torch.Tensor, size: int, chunk: int = 512) -> torch.Tensor:
    """uint8 N x C x H x W images resized to ``size`` x ``size`` (bilinear, antialiased), still uint8."""
    if x.dim() != 4:
        raise ValueError(f"expected N x C x H x W images, got shape {tuple(x.shape)}")
    if size <= 0:
        raise ValueError(f"size must be positive, got {size}")
    if x.shape[-2:] == (size, size):
        return x
    out = torch.empty(len(x), x.shape[1], size, size, dtype=torch.uint8)
    for start in range(0, len(x), chunk):
        part = x[start:start + chunk].float()
        part = torch.nn.functional.interpolate(part, size=(size, size), mode="bilinear", antialias=True,
                                               align_corners=False)
        out[start:start + chunk] = part.round_().clamp_(0, 255).to(torch.uint8)
    return out


def _checked(path: Path, md5: str, dataset: str) -> Path:
    """``path`` if its MD5 is ``md5``, else a :class:`DataFileError` that says what to do."""
    digest = file_hash(path, "md5")
    if digest != md5:
        raise DataFileError(f"{path} is not the original {dataset} file (MD5 {digest}, expected {md5}); "
                            "delete it and download the dataset again")
    return path


def _fetch_or_fail(name: str, root: Path, searched: str, hints: list[str], download: bool | None, fetch) -> None:
    """Run ``fetch()`` unless ``download`` is False; any failure becomes the "not available" error."""
    if download is False:
        raise unavailable(name, root, searched, hints)
    try:
        fetch()
    except Exception as error:  # offline, timeout, HTTP error, checksum mismatch, full disk
        raise unavailable(name, root, searched, hints, cause=error) from error


def _per_class_split(labels: Sequence[int], is_test) -> tuple[list[int], list[int]]:
    """Indices of the training and test items: ``is_test(k)`` for the k-th item of each class."""
    seen: dict[int, int] = {}
    train, test = [], []
    for i, label in enumerate(labels):
        k = seen.get(label, 0)
        seen[label] = k + 1
        (test if is_test(k) else train).append(i)
    return train, test


# ------------------------------------------------------------------ SVHN


def read_svhn_mat(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """One SVHN ``*_32x32.mat`` file: uint8 N x 3 x 32 x 32 images and labels 0..9 (the file's 10 is 0)."""
    from scipy.io import loadmat

    try:
        mat = loadmat(str(path))
    except (ValueError, OSError) as error:
        raise DataFileError(f"cannot read {path} as a MATLAB file: {error}") from error
    if "X" not in mat or "y" not in mat:
        raise DataFileError(f"{path} holds no 'X' and 'y' arrays; it is not an SVHN file")
    x, y = np.asarray(mat["X"]), np.asarray(mat["y"]).reshape(-1).astype(np.int64)
    if x.ndim != 4 or x.shape[2] != 3 or x.shape[3] != len(y):
        raise DataFileError(f"{path}: expected X of shape 32 x 32 x 3 x N with N labels, got {x.shape} "
                            f"and {len(y)} labels")
    if ((y < 1) | (y > 10)).any():
        raise DataFileError(f"{path}: SVHN labels lie in 1..10, found {sorted(set(y.tolist()))[:5]}...")
    images = torch.from_numpy(np.ascontiguousarray(x.transpose(3, 2, 0, 1)).astype(np.uint8))
    return images, torch.from_numpy(y % 10)


def download_svhn(root=None, progress: bool = True) -> Path:
    """Download SVHN's training and test files (resumably, MD5-checked) into ``<root>/svhn``."""
    folder = data_root(root) / SVHN_FOLDER
    for url, name, md5 in SVHN_FILES.values():
        download_file(url, folder / name, md5=md5, progress=progress)
    return folder


def load_svhn(root=None, download: bool | None = None):
    """SVHN cropped digits (73,257 + 26,032 images, 3 x 32 x 32, classes 0..9)."""
    root = data_root(root)
    folder = root / SVHN_FOLDER
    paths = {split: folder / name for split, (_, name, _) in SVHN_FILES.items()}
    if not all(p.is_file() for p in paths.values()):
        hints = [f"go online and call load_dataset('svhn') once: about 180 MB from {SVHN_FILES['train'][0]} "
                 f"and {SVHN_FILES['test'][0]} into {folder};",
                 f"or copy train_32x32.mat and test_32x32.mat into {folder};"]
        _fetch_or_fail("svhn", root, str(folder), hints, download, lambda: download_svhn(root))

    def build() -> dict:
        content = {"files": {}}
        for split, path in paths.items():
            _checked(path, SVHN_FILES[split][2], "SVHN")
            content[f"x_{split}"], content[f"y_{split}"] = read_svhn_mat(path)
            content["files"][f"x_{split}"] = content["files"][f"y_{split}"] = [str(path)]
        return content

    content = cached(root, "svhn", build)
    return to_dataset("svhn", content, 10, [str(i) for i in range(10)], f"SVHN files in {folder}")


# ------------------------------------------------------------------ STL-10


def read_stl10_images(path: Path) -> torch.Tensor:
    """STL-10's ``*_X.bin``: uint8 N x 3 x 96 x 96 (the file stores each channel column-major)."""
    raw = np.fromfile(path, dtype=np.uint8)
    per_image = 3 * STL10_SIDE * STL10_SIDE
    if raw.size == 0 or raw.size % per_image:
        raise DataFileError(f"{path}: {raw.size} bytes is not a whole number of 3 x 96 x 96 images")
    x = raw.reshape(-1, 3, STL10_SIDE, STL10_SIDE).transpose(0, 1, 3, 2)
    return torch.from_numpy(np.ascontiguousarray(x))


def read_stl10_labels(path: Path) -> torch.Tensor:
    """STL-10's ``*_y.bin``: one byte per image, 1..10, returned as 0..9."""
    y = np.fromfile(path, dtype=np.uint8).astype(np.int64)
    if ((y < 1) | (y > 10)).any():
        raise DataFileError(f"{path}: STL-10 labels lie in 1..10, found values outside")
    return torch.from_numpy(y - 1)


def download_stl10(root=None, progress: bool = True) -> Path:
    """Download (MD5-checked, about 2.6 GB) and unpack ``stl10_binary.tar.gz`` under the data root."""
    base = data_root(root)
    archive = download_file(STL10_URL, base / "stl10_binary.tar.gz", md5=STL10_MD5, progress=progress)
    extract_archive(archive, base, remove=True)
    return base / STL10_FOLDER


def load_stl10(root=None, download: bool | None = None, size: int | None = 32):
    """STL-10's labelled images (5,000 + 8,000, 10 classes), resized to ``size`` (32: the paper; None: 96)."""
    root = data_root(root)
    folder = root / STL10_FOLDER
    paths = {key: folder / name for key, (name, _) in STL10_FILES.items()}
    if not all(p.is_file() for p in paths.values()):
        hints = [f"go online and call load_dataset('stl10') once: about 2.6 GB from {STL10_URL}, unpacked "
                 f"into {folder};", f"or unpack that archive into {root};"]
        _fetch_or_fail("stl10", root, str(folder), hints, download, lambda: download_stl10(root))

    def build() -> dict:
        content = {"files": {}}
        for key, path in paths.items():
            _checked(path, STL10_FILES[key][1], "STL-10")
            content[key] = read_stl10_images(path) if key.startswith("x") else read_stl10_labels(path)
            content["files"][key] = [str(path)]
            if key.startswith("x") and size is not None:
                content[key] = resize_uint8(content[key], size)
        for split in ("train", "test"):
            if len(content[f"x_{split}"]) != len(content[f"y_{split}"]):
                raise DataFileError(f"{paths[f'x_{split}']} and {paths[f'y_{split}']} hold different numbers "
                                    "of images and labels")
        return content

    content = cached(root, f"stl10-{size or STL10_SIDE}px", build)
    return to_dataset("stl10", content, 10, STL10_CLASSES, f"STL-10 files in {folder}")


# ------------------------------------------------------------------ Caltech-101


def download_caltech101(root=None, progress: bool = True) -> Path:
    """Download (MD5-checked, about 130 MB) ``caltech-101.zip`` and unpack its inner tar.gz under the root."""
    base = data_root(root)
    archive = download_file(CALTECH_URL, base / "caltech-101.zip", md5=CALTECH_MD5, progress=progress)
    inner = extract_archive(archive, base / "caltech-101-zip", remove=True)
    tars = sorted(inner.rglob("101_ObjectCategories.tar.gz"))
    if not tars:
        raise DataFileError(f"{archive} holds no 101_ObjectCategories.tar.gz")
    extract_archive(tars[0], base)
    shutil.rmtree(inner)  # the inner tar.gz, unpacked
    return base / CALTECH_FOLDER


def image_folders(folder: Path) -> tuple[list[str], list[tuple[Path, int]]]:
    """The sorted class folders of ``folder`` and (path, class index) of every image in them."""
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir())
    files = []
    for label, name in enumerate(classes):
        images = sorted(p for p in (folder / name).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not images:
            raise DataFileError(f"no images in {folder / name}")
        files += [(p, label) for p in images]
    if not files:
        raise DataFileError(f"no class folders in {folder}")
    return classes, files


def load_caltech101(root=None, download: bool | None = None, size: int = 224):
    """Caltech-101's 102 folders (BACKGROUND_Google included) as classes, resized to ``size`` (224: the
    paper), split 7:3 within each class (see the module docstring)."""
    root = data_root(root)
    folder = root / CALTECH_FOLDER
    if not folder.is_dir():
        hints = [f"go online and call load_dataset('caltech101') once: about 130 MB from {CALTECH_URL};",
                 f"or unpack 101_ObjectCategories.tar.gz (inside that zip) into {root};"]
        _fetch_or_fail("caltech101", root, str(folder), hints, download, lambda: download_caltech101(root))
    classes, files = image_folders(folder)

    def build() -> dict:
        train, test = _per_class_split([label for _, label in files], lambda k: k % 10 in CALTECH_TEST_RESIDUES)
        content = {}
        for split, index in (("train", train), ("test", test)):
            content[f"x_{split}"] = decode_images([files[i][0] for i in index], size, desc=f"Caltech-101 {split}")
            content[f"y_{split}"] = torch.tensor([files[i][1] for i in index], dtype=torch.int64)
        return content

    content = cached(root, f"caltech101-{size}px", build)
    return to_dataset("caltech101", content, len(classes), classes, f"Caltech-101 in {folder}")


# ------------------------------------------------------------------ notMNIST


NOTMNIST_HINTS = [
    "notMNIST (Yaroslav Bulatov, 2011) has no stable public download with a published checksum, so clutils "
    "does not fetch it;",
    "find a copy of notMNIST_small (a folder per letter A..J of 28 x 28 PNG files, about 18,700 images) and "
    "put it under the data root as notMNIST_small/A ... notMNIST_small/J;",
]


def _decodable(paths: Sequence[Path]) -> list[Path]:
    """The files PIL can open (the notMNIST archives hold a few empty or broken PNGs)."""
    from PIL import Image

    good = []
    for path in paths:
        try:
            with Image.open(path) as image:
                image.verify()
            good.append(path)
        except (OSError, SyntaxError):
            continue
    return good


def load_notmnist(root=None, download: bool | None = None, size: int = 32):
    """notMNIST's letters A..J from a local ``notMNIST_small`` folder, as RGB at ``size`` (32: the paper)."""
    root = data_root(root)
    folder = root / NOTMNIST_FOLDER
    if not all((folder / letter).is_dir() for letter in NOTMNIST_LETTERS):
        raise unavailable("notmnist", root, str(folder), NOTMNIST_HINTS)

    def build() -> dict:
        files = []
        for label, letter in enumerate(NOTMNIST_LETTERS):
            paths = _decodable(sorted(p for p in (folder / letter).iterdir() if p.suffix.lower() == ".png"))
            if not paths:
                raise DataFileError(f"no readable PNG images in {folder / letter}")
            files += [(p, label) for p in paths]
        train, test = _per_class_split([label for _, label in files], lambda k: k % 5 == 0)
        content = {}
        for split, index in (("train", train), ("test", test)):
            content[f"x_{split}"] = decode_images([files[i][0] for i in index], size, desc=f"notMNIST {split}")
            content[f"y_{split}"] = torch.tensor([files[i][1] for i in index], dtype=torch.int64)
        return content

    content = cached(root, f"notmnist-{size}px", build)
    return to_dataset("notmnist", content, 10, NOTMNIST_LETTERS, f"notMNIST_small in {folder}")


__all__ = ["load_svhn", "load_stl10", "load_caltech101", "load_notmnist",
           "resize_uint8", "read_svhn_mat", "read_stl10_images", "read_stl10_labels"]
