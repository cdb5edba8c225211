"""Downloading and unpacking dataset files with urllib only.

``download_file`` fetches a URL into ``dest`` through a ``dest.part`` file,
resumes a partial download with an HTTP Range request, shows a tqdm progress
bar and verifies a SHA-256 or MD5 checksum. ``extract_archive`` unpacks zip,
tar(.gz/.bz2/.xz) and single-file .gz archives, refusing members that would
land outside the destination folder.
"""
from __future__ import annotations

import gzip
import hashlib
import http.client
import os
import re
import shutil
import tarfile
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

from tqdm.auto import tqdm

USER_AGENT = "clutils (https://pypi.org/project/clutils)"
TIMEOUT_S = 30.0  # per socket operation: a stalled server fails instead of hanging
CHUNK = 1 << 20


class DownloadError(RuntimeError):
    """A file could not be downloaded (network, HTTP or incomplete transfer)."""


class ChecksumError(DownloadError):
    """A downloaded file does not match its published checksum."""


def file_hash(path: str | os.PathLike, algorithm: str = "sha256") -> str:
    """The hex digest of a file's content with ``algorithm`` (sha256, md5, ...)."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def _expected_hash(sha256: str | None, md5: str | None) -> tuple[str, str] | None:
    """The (algorithm, digest) pair to check, or None when no checksum was given."""
    if sha256 and md5:
        raise ValueError("give sha256 or md5, not both")
    if sha256:
        return "sha256", sha256.lower()
    if md5:
        return "md5", md5.lower()
    return None


def _matches(path: Path, expected: tuple[str, str] | None) -> bool:
    """Whether ``path`` has the expected checksum (always True without one)."""
    return expected is None or file_hash(path, expected[0]) == expected[1]


def _open(url: str, offset: int, timeout: float):
    """Open ``url`` asking for bytes from ``offset`` on; returns (response, resumed)."""
    headers = {"User-Agent": USER_AGENT}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    response = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    return response, response.status == 206


def _total_from_416(error: urllib.error.HTTPError) -> int | None:
    """The full size a server reports with '416 Range Not Satisfiable', if any."""
    match = re.search(r"/(\d+)", error.headers.get("Content-Range", "") or "")
    return int(match.group(1)) if match else None


def _fetch(url: str, part: Path, progress: bool, timeout: float) -> None:
    """Fetch ``url`` into ``part``, appending to what is already there when the server allows."""
    offset = part.stat().st_size if part.exists() else 0
    try:
        response, resumed = _open(url, offset, timeout)
    except urllib.error.HTTPError as error:
        if error.code == 416 and offset and _total_from_416(error) == offset:
            return  # the partial file is already complete
        if error.code != 416:
            raise
        part.unlink()  # the partial file is longer than the resource: start over
        offset = 0
        response, resumed = _open(url, 0, timeout)
    with response:
        if not resumed:
            offset = 0
        length = response.headers.get("Content-Length")
        total = offset + int(length) if length is not None else None
        bar = tqdm(
            total=total, initial=offset, unit="B", unit_scale=True, unit_divisor=1024,
            desc=part.name[: -len(".part")], disable=not progress,
        )
        with bar, open(part, "ab" if resumed else "wb") as out:
            for block in iter(lambda: response.read(CHUNK), b""):
                out.write(block)
                bar.update(len(block))
    size = part.stat().st_size
    if total is not None and size != total:
        raise DownloadError(
            f"download of {url} stopped at {size} of {total} bytes; "
            f"run again to resume from {part}"
        )


def download_file(
    url: str,
    dest: str | os.PathLike,
    sha256: str | None = None,
    md5: str | None = None,
    progress: bool = True,
    timeout: float = TIMEOUT_S,
) -> Path:
    """Download ``url`` to ``dest`` (resuming, with progress bar and checksum); return ``dest``."""
    dest = Path(dest)
    expected = _expected_hash(sha256, md5)
    if dest.is_file() and _matches(dest, expected):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    try:
        _fetch(url, part, progress, timeout)
    except (OSError, http.client.HTTPException) as error:  # URLError, HTTPError, timeouts
        raise DownloadError(f"could not download {url}: {error}") from error
    if expected is not None:
        actual = file_hash(part, expected[0])
        if actual != expected[1]:
            part.unlink()
            raise ChecksumError(
                f"{url}: {expected[0]} of the downloaded file is {actual}, expected {expected[1]}; "
                "the file was deleted (a changed or damaged download): try again"
            )
    os.replace(part, dest)
    return dest


def _inside(folder: Path, name: str) -> Path:
    """``folder / name``, refusing absolute names and names that climb out with '..'."""
    target = (folder / name).resolve()
    if target != folder and folder not in target.parents:
        raise ValueError(f"archive member {name!r} would be written outside {folder}")
    return target


def extract_archive(archive: str | os.PathLike, dest: str | os.PathLike | None = None,
                    remove: bool = False) -> Path:
    """Unpack a zip, tar(.gz/.bz2/.xz) or .gz file into ``dest`` (default: its folder)."""
    archive = Path(archive)
    folder = Path(dest) if dest is not None else archive.parent
    folder.mkdir(parents=True, exist_ok=True)
    folder = folder.resolve()
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            for name in zf.namelist():
                _inside(folder, name)
            zf.extractall(folder)
    elif tarfile.is_tarfile(archive):
        with tarfile.open(archive) as tf:
            for member in tf.getmembers():
                _inside(folder, member.name)
                if member.issym() or member.islnk():
                    raise ValueError(f"{archive}: refusing link member {member.name!r}")
            safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
            tf.extractall(folder, **safe)
    elif archive.name.endswith(".gz"):
        with gzip.open(archive, "rb") as src, open(folder / archive.name[:-3], "wb") as out:
            shutil.copyfileobj(src, out, CHUNK)
    else:
        raise ValueError(f"{archive}: not a zip, tar or gzip archive")
    if remove:
        archive.unlink()
    return folder
