"""Where datasets live on disk, and the cache of decoded tensors kept there.

The data root is chosen in this order: an explicit ``root`` argument, the
``CLUTILS_DATA`` environment variable, then a per-user cache directory
(``$XDG_CACHE_HOME/clutils``, by default ``~/.cache/clutils``). Decoded
datasets are cached as ``<root>/clutils-cache/<key>.pt`` so that the second
load reads one file instead of decoding the raw files again.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import torch

ENV_VAR = "CLUTILS_DATA"
CACHE_DIR = "clutils-cache"


def data_root(root: str | os.PathLike | None = None) -> Path:
    """The data root: ``root`` if given, else ``$CLUTILS_DATA``, else the user cache dir."""
    if root is not None and str(root) != "":
        return Path(root).expanduser()
    env = os.environ.get(ENV_VAR, "")
    if env:
        return Path(env).expanduser()
    cache_home = os.environ.get("XDG_CACHE_HOME", "")
    base = Path(cache_home).expanduser() if cache_home else Path.home() / ".cache"
    return base / "clutils"


def cache_file(root: Path, key: str) -> Path:
    """The path of the decoded-tensor cache file for ``key`` under ``root``."""
    return root / CACHE_DIR / f"{key}.pt"


def load_cache(root: Path, key: str) -> dict | None:
    """The cached tensors for ``key``, or None when absent or unreadable."""
    path = cache_file(root, key)
    if not path.is_file():
        return None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # a damaged cache is rebuilt, never trusted
        warnings.warn(f"ignoring unreadable cache {path}: {error}", stacklevel=2)
        return None


def save_cache(root: Path, key: str, content: dict) -> Path | None:
    """Write ``content`` to the cache atomically; warn (not fail) if the root is read-only."""
    path = cache_file(root, key)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(content, tmp)
        os.replace(tmp, path)
        return path
    except OSError as error:
        tmp.unlink(missing_ok=True)
        warnings.warn(f"could not write the dataset cache {path}: {error}", stacklevel=2)
        return None
