"""Output files written safely: checked before a run, replaced atomically after it.

``atomic_write`` writes to a temporary file with a unique name beside the target
and renames it over the target, so a reader never sees half a file and two
processes writing the same target never share a temporary file (the last
rename wins, whole). ``check_output_file`` and ``check_output_dir`` find an
unwritable destination before hours of training, not after.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path


class OutputPathError(ValueError):
    """An output path that cannot be written (a file where a folder is needed, no permission, ...)."""


def atomic_write(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a uniquely named temporary file in the same folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _probe_folder(folder: Path, what: str) -> None:
    """Create ``folder`` if needed and write (then delete) a file in it."""
    existing = next((p for p in (folder, *folder.parents) if p.exists()), None)
    if existing is not None and not existing.is_dir():
        raise OutputPathError(f"{what}: {existing} is a file, not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        handle, probe = tempfile.mkstemp(dir=folder, prefix=".clutils-write-test.")
        os.close(handle)
        os.unlink(probe)
    except OSError as error:
        raise OutputPathError(f"{what}: cannot write in {folder} ({error.strerror or error})") from None


def check_output_file(path: str | os.PathLike, what: str) -> Path:
    """Refuse ``path`` as a file to write if it is a folder or its folder cannot take a new file."""
    path = Path(path)
    if path.is_dir():
        raise OutputPathError(f"{what}: {path} is a folder; give a file name such as {path / 'result.json'}")
    if path.exists() and not path.is_file():  # a device or a pipe: the rename would replace it
        raise OutputPathError(f"{what}: {path} is not a regular file")
    _probe_folder(path.parent, what)
    return path


def check_output_dir(path: str | os.PathLike, what: str) -> Path:
    """Refuse ``path`` as a folder to write in unless it is (or can become) a writable folder."""
    path = Path(path)
    _probe_folder(path, what)
    return path
