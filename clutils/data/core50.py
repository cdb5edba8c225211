"""CORe50 (Lomonaco & Maltoni, CoRL 2017): 50 household objects in 10 categories.

The data comes from the authors' site (https://vlomonaco.github.io/core50/):
the 128 x 128 RGB images ``core50_128x128.zip`` (about 5.9 GB, 164,866 PNGs)
and the metadata pickles ``paths.pkl``, ``LUP.pkl`` and ``labels.pkl``, with
the MD5 checksums the authors publish. The zip unpacks to
``core50_128x128/s{session}/o{object}/C_{ss}_{oo}_{fff}.png``: 11 sessions
(backgrounds and lighting), 50 objects, about 300 frames of video each.

The loader reads that folder layout directly. Following the paper, sessions
1, 2, 4, 5, 6, 8, 9 and 11 are for training and sessions 3, 7 and 10 for
testing; object ``o`` (1-50) belongs to category ``(o - 1) // 5``. The NC
(new classes) scenario is built from these categories by the scenario code.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from .datasets import DatasetUnavailableError, cached, decode_images, to_dataset, unavailable
from .download import download_file, extract_archive
from .root import data_root

SITE = "https://vlomonaco.github.io/core50/data/"
IMAGES_URL = "http://bias.csr.unibo.it/maltoni/download/core50/core50_128x128.zip"
FILES = (
    # (file name, url, md5 published by the authors)
    ("core50_128x128.zip", IMAGES_URL, "745f3373fed08d69343f1058ee559e13"),
    ("paths.pkl", SITE + "paths.pkl", "b568f86998849184df3ec3465290f1b0"),
    ("LUP.pkl", SITE + "LUP.pkl", "33afc26faa460aca98739137fdfa606e"),
    ("labels.pkl", SITE + "labels.pkl", "281c95774306a2196f4505f22fd60ab1"),
)
IMAGES_DIR = "core50_128x128"
UNPACKING = ".clutils-unpacking"  # present only while the zip is being unpacked
TRAIN_SESSIONS = (1, 2, 4, 5, 6, 8, 9, 11)
TEST_SESSIONS = (3, 7, 10)
N_OBJECTS = 50
CATEGORIES = ("plug adapter", "mobile phone", "scissors", "light bulb", "can",
              "glass", "ball", "marker", "cup", "remote control")


def core50_dir(root: str | os.PathLike | None = None) -> Path:
    """The folder that holds CORe50's files under the data root."""
    return data_root(root) / "core50"


def object_category(obj: int) -> int:
    """The category (0-9) of CORe50 object ``obj`` (1-50): five objects per category."""
    if not 1 <= obj <= N_OBJECTS:
        raise ValueError(f"CORe50 objects are numbered 1-{N_OBJECTS}, got {obj}")
    return (obj - 1) // 5


def download_core50(root: str | os.PathLike | None = None, progress: bool = True,
                    keep_archive: bool = False) -> Path:
    """Download (resumably, checksummed) and unpack CORe50's 128x128 images and metadata."""
    folder = core50_dir(root)
    for name, url, md5 in FILES:
        unpacked = (folder / IMAGES_DIR).is_dir() and not (folder / UNPACKING).exists()
        if name.endswith(".zip") and unpacked:
            continue
        path = download_file(url, folder / name, md5=md5, progress=progress)
        if name.endswith(".zip"):
            (folder / UNPACKING).touch()
            extract_archive(path, folder, remove=not keep_archive)
            (folder / UNPACKING).unlink()
    return folder


def image_files(images: Path, sessions, max_per_object: int | None = None) -> list[tuple[Path, int, int]]:
    """(path, session, object) of every image of ``sessions``, at most ``max_per_object`` per object.

    When capped, the kept frames are spread evenly over the object's sessions and frames.
    """
    found = []
    for obj in range(1, N_OBJECTS + 1):
        files = [
            (path, session, obj)
            for session in sessions
            for path in sorted((images / f"s{session}" / f"o{obj}").glob(f"C_{session:02d}_{obj:02d}_*.png"))
        ]
        if max_per_object is not None and len(files) > max_per_object:
            keep = np.linspace(0, len(files) - 1, max_per_object).round().astype(int)
            files = [files[i] for i in keep]
        found += files
    return found


def _decode_split(images: Path, sessions, size, max_per_object) -> dict:
    """The images, objects and sessions of one split as tensors."""
    files = image_files(images, sessions, max_per_object)
    if not files:
        raise DatasetUnavailableError(
            f"no CORe50 images of sessions {list(sessions)} under {images} "
            f"(expected s<session>/o<object>/C_<ss>_<oo>_<fff>.png)", dataset="core50", root=images)
    x = decode_images([f[0] for f in files], size, desc=f"CORe50 sessions {list(sessions)}")
    return {"x": x, "object": torch.tensor([f[2] for f in files]),
            "session": torch.tensor([f[1] for f in files])}


def _ensure_images(root: Path, download: bool | None) -> Path:
    """The unpacked image folder, downloading it when absent and allowed."""
    images = core50_dir(root) / IMAGES_DIR
    folder = core50_dir(root)
    interrupted = (folder / UNPACKING).exists()
    if images.is_dir() and (download is False or not interrupted):
        return images
    hints = [f"go online and call clutils.data.core50.download_core50() once "
             f"(about 6 GB, into {core50_dir(root)});",
             f"or unpack core50_128x128.zip from {IMAGES_URL} into {core50_dir(root)};"]
    if download is False:
        raise unavailable("core50", root, str(images), hints)
    try:
        download_core50(root)
    except Exception as error:  # offline, timeout, checksum mismatch, full disk
        raise unavailable("core50", root, str(images), hints, cause=error) from error
    return images


def load_core50(root=None, download: bool | None = None, size: int | None = 32,
                max_per_object: int | None = None, labels: str = "category"):
    """CORe50 as tensors: train sessions 1,2,4,5,6,8,9,11, test sessions 3,7,10.

    ``size`` downscales the 128x128 images (None keeps them: about 32 GB as float32);
    ``max_per_object``
    caps the images per object in each split; ``labels`` is "category" (10
    classes) or "object" (50 classes). ``extra`` holds every image's object and session.
    """
    if labels not in ("category", "object"):
        raise ValueError(f"labels must be 'category' or 'object', got {labels!r}")
    root = data_root(root)
    images = _ensure_images(root, download)
    key = f"core50-{size or 128}px-{max_per_object or 'all'}"

    def build() -> dict:
        train = _decode_split(images, TRAIN_SESSIONS, size, max_per_object)
        test = _decode_split(images, TEST_SESSIONS, size, max_per_object)
        return {f"{k}_{split}": v for split, part in (("train", train), ("test", test))
                for k, v in part.items()}

    content = cached(root, key, build)
    arrays = {"x_train": content["x_train"], "x_test": content["x_test"]}
    for split in ("train", "test"):
        objects = content[f"object_{split}"]
        arrays[f"y_{split}"] = (objects - 1) // 5 if labels == "category" else objects - 1
    names = CATEGORIES if labels == "category" else [f"{CATEGORIES[(o - 1) // 5]} {o}" for o in range(1, 51)]
    extra = {f"{k}_{split}": content[f"{k}_{split}"] for k in ("object", "session") for split in ("train", "test")}
    return to_dataset("core50" if labels == "category" else "core50-objects", arrays, len(names), names,
                      f"CORe50 images in {images}", extra)
