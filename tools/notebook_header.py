#!/usr/bin/env python
"""Give every notebook under ``notebooks/`` the book's canonical head, or check that it has it.

    python tools/notebook_header.py            # rewrite the head of every notebook in place
    python tools/notebook_header.py --check    # exit 1 and name each notebook whose head differs

The head is the two code cells right after the notebook's first (markdown) cell:

1. **the Colab cell** (tags ``colab-install`` and ``remove-cell``: kept in the notebook,
   left out of the rendered page). On Google Colab it installs ``clutils`` from the
   book's repository; anywhere else it does nothing. The repository's URL is read
   from ``_config.yml`` (``repository.url``), the one place it is configured, where
   the book's launch buttons read it too.
2. **the parameters cell** (tag ``parameters``). Its defaults come from environment
   variables (``CLUTILS_PROFILE``, ``CLUTILS_DEVICE``, ``CLUTILS_SEED``,
   ``CLUTILS_DATASET``), so a notebook run in a kernel without papermill (JupyterLab,
   ``pytest --nbval-lax``) can be switched to another profile or dataset without an
   edit; papermill and the book build inject their own cell right below it, which
   overrides every value.

Any cell already tagged ``colab-install`` or ``parameters`` is replaced (its cell id
kept), so the tool is idempotent and a new chapter's notebook is fixed by running it.
Notebooks are written as the project stores them:
``json.dumps(nb, indent=1, ensure_ascii=False) + "\\n"``.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "_config.yml"

COLAB_TAG = "colab-install"
PARAMETERS_TAG = "parameters"
#: The Colab cell's tags: its own, and myst-nb's tag that leaves it out of the rendered page.
COLAB_TAGS = [COLAB_TAG, "remove-cell"]
COLAB_CELL_ID = "colab-install"
#: The extras the Colab cell installs: "book" brings myst-nb, whose glue some notebooks use.
COLAB_EXTRAS = "book"

#: The environment variables the parameters cell reads, with the parameter each one sets.
ENVIRONMENT = {
    "profile": "CLUTILS_PROFILE",
    "device": "CLUTILS_DEVICE",
    "seed": "CLUTILS_SEED",
    "dataset": "CLUTILS_DATASET",
}

COLAB_SOURCE = '''\
# On Google Colab, install clutils from the book's repository first; anywhere else this cell
# does nothing (a local clone installs it with `make setup` or `make lab`).
import subprocess
import sys

if "google.colab" in sys.modules:
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet",
                    "clutils[{extras}] @ git+{url}"], check=True)'''

PARAMETERS_SOURCE = '''\
# Parameters. papermill and the book build set them in a cell of their own right below this
# one. Run by hand, the defaults come from the environment, so a whole Jupyter session can be
# switched at once (e.g. `CLUTILS_PROFILE=smoke CLUTILS_DATASET=fashion-mnist make lab`);
# or edit a line here, e.g. dataset = "fashion-mnist" on a machine without the paper's data.
import os

profile = os.environ.get("CLUTILS_PROFILE", "quick")  # "smoke", "quick" or "paper"
device = os.environ.get("CLUTILS_DEVICE", "auto")  # "auto", "cpu" or "cuda"
seed = int(os.environ.get("CLUTILS_SEED", "0"))
dataset = os.environ.get("CLUTILS_DATASET") or None  # None: the paper's own dataset'''

#: The line of the parameters cell that chooses the dataset, and what a reader replaces it with
#: on a machine without the paper's data (quoted by the data layer's error message).
DATASET_LINE = 'dataset = os.environ.get("CLUTILS_DATASET") or None'


class HeaderError(ValueError):
    """A notebook whose head cannot be made canonical (e.g. it does not start with markdown)."""


def repository_url(config: Path = CONFIG) -> str:
    """``repository.url`` of ``_config.yml``: where the Colab cell installs ``clutils`` from."""
    url = (yaml.safe_load(config.read_text(encoding="utf-8")).get("repository") or {}).get("url", "")
    if not str(url).startswith("https://"):
        raise HeaderError(f"{config}: repository.url must be an https:// URL, not {url!r}")
    return str(url).rstrip("/")


def _lines(text: str) -> list[str]:
    return text.splitlines(keepends=True)


def colab_cell(url: str, cell_id: str = COLAB_CELL_ID) -> dict:
    return {"cell_type": "code", "execution_count": None, "id": cell_id,
            "metadata": {"tags": list(COLAB_TAGS)}, "outputs": [],
            "source": _lines(COLAB_SOURCE.format(url=url, extras=COLAB_EXTRAS))}


def parameters_cell(cell_id: str) -> dict:
    return {"cell_type": "code", "execution_count": None, "id": cell_id,
            "metadata": {"tags": [PARAMETERS_TAG]}, "outputs": [], "source": _lines(PARAMETERS_SOURCE)}


def _tags(cell: dict) -> list[str]:
    return list(cell.get("metadata", {}).get("tags", []))


def with_canonical_head(nb: dict, url: str) -> dict:
    """``nb`` with the Colab cell and the parameters cell right after its first (markdown) cell."""
    cells = list(nb.get("cells", []))
    if not cells or cells[0].get("cell_type") != "markdown":
        raise HeaderError("a notebook must start with a markdown cell (its title and introduction)")
    params = [c for c in cells if PARAMETERS_TAG in _tags(c)]
    if len(params) > 1:
        raise HeaderError(f"{len(params)} cells are tagged {PARAMETERS_TAG!r}; a notebook has one")
    params_id = params[0].get("id") if params else None
    rest = [c for c in cells[1:] if COLAB_TAG not in _tags(c) and PARAMETERS_TAG not in _tags(c)]
    taken = {c.get("id") for c in rest}
    params_id = params_id or next(f"parameters-{n}" for n in range(len(cells) + 1)
                                  if f"parameters-{n}" not in taken)
    out = dict(nb)
    out["cells"] = [cells[0], colab_cell(url), parameters_cell(params_id)] + rest
    return out


def serialise(nb: dict) -> str:
    return json.dumps(nb, indent=1, ensure_ascii=False) + "\n"


def notebooks(root: Path = ROOT) -> list[Path]:
    return sorted(p for p in (root / "notebooks").glob("*.ipynb") if not p.name.startswith("."))


def fix(path: Path, url: str, *, write: bool = True) -> bool:
    """Make ``path``'s head canonical (when ``write``); return whether it was not already."""
    text = path.read_text(encoding="utf-8")
    try:
        new = serialise(with_canonical_head(json.loads(text), url))
    except HeaderError as err:
        raise HeaderError(f"{path}: {err}") from None
    if new == text:
        return False
    if write:
        path.write_text(new, encoding="utf-8")
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a head differs")
    parser.add_argument("paths", nargs="*", type=Path, help="notebooks (default: every notebooks/*.ipynb)")
    args = parser.parse_args(argv)
    url = repository_url()
    paths = args.paths or notebooks()
    try:
        changed = [p for p in paths if fix(p, url, write=not args.check)]
    except HeaderError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for path in changed:
        print(f"{'not canonical' if args.check else 'rewrote'}: {path}")
    if args.check and changed:
        print("Run `python tools/notebook_header.py` to give them the canonical head.", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
