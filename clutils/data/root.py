"""Where datasets live on disk, and the cache of decoded tensors kept there.

The data root is chosen in this order: an explicit ``root`` argument, the
``CLUTILS_DATA`` environment variable, then a per-user cache directory
(``$XDG_CACHE_HOME/clutils``, by default ``~/.cache/clutils``). Decoded
datasets are cached as ``<root>/clutils-cache/<key>.pt`` so that the second
load reads one file instead of decoding the raw files again. The cache records
the size and modification time of the files it was decoded from and is rebuilt
when one of them changes.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Iterable

import torch

ENV_VAR = "CLUTILS_DATA"
CACHE_DIR = "clutils-cache"
IMAGES = ("x_train", "x_test")  # what every cached dataset holds


class DataRootError(ValueError):
    """The data root names a file, not a folder."""


def data_root(root: str | os.PathLike | None = None) -> Path:
    """The data root: ``root`` if given, else ``$CLUTILS_DATA``, else the user cache dir.

    A root that exists but is not a folder is a :class:`DataRootError`.
    """
    if root is not None and str(root) != "":
        path, origin = Path(root).expanduser(), "the data root"
    elif os.environ.get(ENV_VAR, ""):
        path, origin = Path(os.environ[ENV_VAR]).expanduser(), f"the data root ${ENV_VAR}"
    else:
        cache_home = os.environ.get("XDG_CACHE_HOME", "")
        base = Path(cache_home).expanduser() if cache_home else Path.home() / ".cache"
        path, origin = base / "clutils", "the default data root"
    if path.exists() and not path.is_dir():
        raise DataRootError(f"{origin} {path} is a file, not a folder; point it at a folder "
                            "(it is created when missing)")
    return path


def cache_file(root: Path, key: str) -> Path:
    """The path of the decoded-tensor cache file for ``key`` under ``root``."""
    return root / CACHE_DIR / f"{key}.pt"


def file_signatures(paths: Iterable[str | os.PathLike]) -> dict[str, list[int]]:
    """``{path: [size in bytes, modification time in ns]}``: what tells a changed file."""
    out = {}
    for path in paths:
        stat = os.stat(path)
        out[str(path)] = [stat.st_size, stat.st_mtime_ns]
    return out


def _changed_sources(recorded: dict[str, list[int]]) -> list[str]:
    """The recorded source files that differ now; a deleted one is not a change (the cache is all that is left)."""
    try:
        return [path for path, signature in recorded.items()
                if os.path.exists(path) and file_signatures([path])[path] != list(signature)]
    except (AttributeError, TypeError, OSError):  # a record this code did not write
        return ["its record of them"]


def load_cache(root: Path, key: str, required: Iterable[str] = IMAGES) -> dict | None:
    """The cached tensors for ``key``, or None when absent, unreadable, without the ``required``
    tensors, or older than a change of its source files."""
    path = cache_file(root, key)
    if not path.is_file():
        return None
    try:
        content = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # a damaged cache is rebuilt, never trusted
        warnings.warn(f"ignoring unreadable cache {path}: {error}", stacklevel=2)
        return None
    required = tuple(required)
    if not isinstance(content, dict) or not all(isinstance(content.get(k), torch.Tensor) for k in required):
        warnings.warn(f"ignoring the cache {path}: it lacks the tensors {', '.join(required)}", stacklevel=2)
        return None
    changed = _changed_sources(content.pop("source_files", {}))
    if changed:
        warnings.warn(f"rebuilding the cache {path}: {', '.join(changed)} changed since it was written",
                      stacklevel=2)
        return None
    return content


def save_cache(root: Path, key: str, content: dict, sources: Iterable[str | os.PathLike] = ()) -> Path | None:
    """Write ``content`` to the cache atomically; warn (not fail) if the root is read-only.

    ``sources``, the files ``content`` was decoded from, invalidate the cache when they change.
    """
    path = cache_file(root, key)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save({**content, "source_files": file_signatures(sources)}, tmp)
        os.replace(tmp, path)
        return path
    except OSError as error:
        tmp.unlink(missing_ok=True)
        warnings.warn(f"could not write the dataset cache {path}: {error}", stacklevel=2)
        return None
