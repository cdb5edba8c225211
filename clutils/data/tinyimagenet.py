"""Tiny ImageNet 200 (Stanford CS231n): 200 ImageNet classes at 64 x 64 x 3.

The data comes from ``http://cs231n.stanford.edu/tiny-imagenet-200.zip``
(about 237 MB, MD5 below), which unpacks to ``tiny-imagenet-200/`` with
``wnids.txt`` (the 200 WordNet ids), ``words.txt`` (their names),
``train/<wnid>/images/*.JPEG`` (500 per class) and ``val/images/*.JPEG`` with
``val/val_annotations.txt`` (50 per class). The official test split has no
labels, so the labelled val split serves as the test set here.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch

from .datasets import cached, decode_images, to_dataset, unavailable
from .download import download_file, extract_archive
from .root import data_root

URL = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"
MD5 = "90528d7ca1a48142e341f4ef8d21d0de"
FOLDER = "tiny-imagenet-200"
UNPACKING = ".clutils-unpacking-tiny-imagenet"  # present only while unpacking


def tiny_imagenet_dir(root: str | os.PathLike | None = None) -> Path:
    """The unpacked ``tiny-imagenet-200`` folder under the data root."""
    return data_root(root) / FOLDER


def download_tiny_imagenet(root: str | os.PathLike | None = None, progress: bool = True,
                           keep_archive: bool = False) -> Path:
    """Download (resumably, checksummed) and unpack Tiny ImageNet 200 under the data root."""
    base = data_root(root)
    archive = download_file(URL, base / "tiny-imagenet-200.zip", md5=MD5, progress=progress)
    (base / UNPACKING).touch()
    extract_archive(archive, base, remove=not keep_archive)
    (base / UNPACKING).unlink()
    return base / FOLDER


def read_classes(folder: Path) -> tuple[list[str], list[str]]:
    """The sorted WordNet ids of ``wnids.txt`` and a readable name for each (from ``words.txt``)."""
    wnids = sorted({line.strip() for line in (folder / "wnids.txt").read_text().splitlines() if line.strip()})
    words = {}
    if (folder / "words.txt").is_file():
        for line in (folder / "words.txt").read_text().splitlines():
            wnid, _, text = line.partition("\t")
            words[wnid] = text.split(",")[0].strip()
    return wnids, [words.get(w) or w for w in wnids]


def train_files(folder: Path, wnids: list[str], max_per_class: int | None = None) -> list[tuple[Path, int]]:
    """(path, class index) of the training images, at most ``max_per_class`` per class."""
    files = []
    for label, wnid in enumerate(wnids):
        paths = sorted((folder / "train" / wnid / "images").glob("*.JPEG"))
        if not paths:
            raise ValueError(f"no training images in {folder / 'train' / wnid / 'images'}")
        files += [(p, label) for p in paths[:max_per_class]]
    return files


def val_files(folder: Path, wnids: list[str], max_per_class: int | None = None) -> list[tuple[Path, int]]:
    """(path, class index) of the val images listed in ``val/val_annotations.txt``."""
    index = {w: i for i, w in enumerate(wnids)}
    annotations = folder / "val" / "val_annotations.txt"
    files, counts = [], [0] * len(wnids)
    for number, line in enumerate(annotations.read_text().splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) < 2 or parts[1] not in index:
            raise ValueError(f"{annotations}, line {number}: expected '<file>\\t<wnid>...', got {line!r}")
        label = index[parts[1]]
        if max_per_class is None or counts[label] < max_per_class:
            files.append((folder / "val" / "images" / parts[0], label))
            counts[label] += 1
    return files


def load_tiny_imagenet(root=None, download: bool | None = None, size: int | None = None,
                       max_per_class: int | None = None):
    """Tiny ImageNet 200 as tensors (train split; test = the official val split).

    ``size`` downscales the 64x64 images (e.g. 32 for CPU runs); ``max_per_class``
    caps the images per class in each split.
    """
    root = data_root(root)
    folder = root / FOLDER
    interrupted = (root / UNPACKING).exists()
    if not (folder / "wnids.txt").is_file() or (interrupted and download is not False):
        hints = [f"go online and call clutils.data.tinyimagenet.download_tiny_imagenet() once "
                 f"(about 240 MB, into {root});",
                 f"or unpack {URL} into {root};"]
        if download is False:
            raise unavailable("tiny-imagenet", root, str(folder), hints)
        try:
            download_tiny_imagenet(root)
        except Exception as error:  # offline, timeout, checksum mismatch, full disk
            raise unavailable("tiny-imagenet", root, str(folder), hints, cause=error) from error
    wnids, names = read_classes(folder)

    def build() -> dict:
        content = {}
        for split, files in (("train", train_files(folder, wnids, max_per_class)),
                             ("test", val_files(folder, wnids, max_per_class))):
            content[f"x_{split}"] = decode_images([p for p, _ in files], size, desc=f"Tiny ImageNet {split}")
            content[f"y_{split}"] = torch.tensor([label for _, label in files], dtype=torch.int64)
        return content

    content = cached(root, f"tiny-imagenet-{size or 64}px-{max_per_class or 'all'}", build)
    return to_dataset("tiny-imagenet", content, len(wnids), names, f"Tiny ImageNet 200 in {folder}",
                      {"wnids": tuple(wnids)})
