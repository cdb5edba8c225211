"""The checkpoint of a run directory: checksummed, written atomically, one run at a time.

A checkpoint file is one header line, ``clutils-checkpoint sha256=<hex>``, then
the bytes of ``torch.save(state)``. The SHA-256 of those bytes is checked
before ``torch.load`` sees them (with ``weights_only=True``), so a truncated,
zeroed or otherwise altered file is refused instead of loading changed
weights. Every fault ends in :class:`CheckpointError`, whose message names
the file and how to go on.

A run holds an exclusive lock on its directory (``flock`` on ``.lock``, which
holds the owner's process id) so that a second run into the same directory
stops at once with "in use by process N" instead of racing the first.
"""
from __future__ import annotations

import hashlib
import io
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch

from .files import atomic_write

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: runs are not locked
    fcntl = None

MAGIC = b"clutils-checkpoint sha256="
LOCK_FILE = ".lock"


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used: empty, truncated, altered, foreign or incomplete."""

    def __init__(self, path: Path, problem: str):
        super().__init__(f"the checkpoint {path} {problem}. Delete it to start the run afresh, "
                         "or use another run directory")
        self.path = path


class RunDirError(RuntimeError):
    """A run directory that cannot be used (it cannot be locked, or another run holds it)."""


class RunDirInUseError(RunDirError):
    """Another process is running into the same run directory."""


def write_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Save ``state`` to ``path`` with the SHA-256 of its bytes, atomically."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    payload = buffer.getvalue()
    atomic_write(path, MAGIC + hashlib.sha256(payload).hexdigest().encode() + b"\n" + payload)


def read_checkpoint(path: Path, device: torch.device | str, required: Sequence[str] = ()) -> dict[str, Any]:
    """The state saved by :func:`write_checkpoint`, after checking its checksum and its ``required`` keys."""
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise CheckpointError(path, f"cannot be read ({error.strerror or error})") from None
    header, newline, payload = raw.partition(b"\n")
    if not newline or not header.startswith(MAGIC):
        problem = "is empty" if not raw else "is not a clutils checkpoint (no checksum header)"
        raise CheckpointError(path, problem)
    if hashlib.sha256(payload).hexdigest() != header[len(MAGIC):].decode("ascii", "replace"):
        raise CheckpointError(path, "fails its SHA-256 check (damaged or truncated after it was written)")
    try:
        state = torch.load(io.BytesIO(payload), map_location=device, weights_only=True)
    except Exception as error:  # any unpickling failure: the file is unusable either way
        raise CheckpointError(path, f"cannot be loaded ({type(error).__name__}: {error})") from None
    missing = [key for key in required if not isinstance(state, dict) or key not in state]
    if missing:
        raise CheckpointError(path, f"lacks {', '.join(missing)}")
    return state


@contextmanager
def locked(run_dir: Path) -> Iterator[None]:
    """Hold ``run_dir`` for this process; raise :class:`RunDirInUseError` if another holds it."""
    run_dir.mkdir(parents=True, exist_ok=True)
    if fcntl is None:  # pragma: no cover
        yield
        return
    try:
        handle = open(run_dir / LOCK_FILE, "a+")
    except OSError as error:
        raise RunDirError(f"cannot lock the run directory {run_dir}: {error}") from None
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            owner = handle.read().strip() or "another process"
            raise RunDirInUseError(f"the run directory {run_dir} is in use by process {owner}; wait for that "
                                   "run to finish or use another run directory") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def differences(saved: Any, current: Any, name: str = "") -> list[str]:
    """Where two nested settings (dicts of plain values) differ, e.g. ``"lr: 0.001 then, 0.5 now"``."""
    if isinstance(saved, dict) and isinstance(current, dict):
        out = []
        for key in sorted(set(saved) | set(current), key=str):
            label = f"{name}.{key}" if name else str(key)
            if key not in current:
                out.append(f"{label}: {saved[key]!r} then, absent now")
            elif key not in saved:
                out.append(f"{label}: absent then, {current[key]!r} now")
            else:
                out += differences(saved[key], current[key], label)
        return out
    return [] if saved == current else [f"{name}: {saved!r} then, {current!r} now"]
