#!/usr/bin/env python
"""The notebooks of the book in table-of-contents order, as the CI's job matrix.

    python tools/book_matrix.py                  # {"include": [{"notebook": ..., "chapter": ...}, ...]}
    python tools/book_matrix.py --chapter alasso # one chapter's notebooks only

A chapter is an entry ``file: book/<chapter>`` of ``_toc.yml``; its notebooks are
the ``file:``/``glob:`` entries of its sections that name ``notebooks/...``. A
notebook that no entry matches is listed last under the chapter ``more`` (the
book build shows it under "More notebooks"), so no notebook is left out of CI.
"""
from __future__ import annotations

import argparse
import fnmatch
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: The chapter of notebooks that no entry of the table of contents matches.
UNLISTED = "more"


class MatrixError(ValueError):
    pass


def _chapter_entries(toc: dict) -> list[dict]:
    if "parts" in toc:
        return [entry for part in toc["parts"] for entry in part.get("chapters", [])]
    return list(toc.get("chapters", []))


def _notebooks_of(items: list[dict], available: list[str]) -> list[str]:
    """The notebooks (stems) that ``items`` and their sections name, in order."""
    found: list[str] = []
    for item in items:
        if "file" in item:
            doc = str(item["file"]).removesuffix(".ipynb")
            if doc.startswith("notebooks/") and doc.removeprefix("notebooks/") in available:
                found.append(doc.removeprefix("notebooks/"))
        elif "glob" in item:
            found += [nb for nb in available if fnmatch.fnmatch(f"notebooks/{nb}", str(item["glob"]))]
        found += _notebooks_of(item.get("sections", []), available)
    return found


def toc_notebooks(root: Path = ROOT) -> list[tuple[str, str]]:
    """``(chapter, notebook)`` for every notebook under ``notebooks/``, in table-of-contents order."""
    import yaml

    available = sorted(p.stem for p in (root / "notebooks").glob("*.ipynb") if not p.name.startswith("."))
    toc = yaml.safe_load((root / "_toc.yml").read_text())
    rows: list[tuple[str, str]] = []
    seen: set[str] = set()
    for entry in _chapter_entries(toc):
        chapter = Path(str(entry.get("file", UNLISTED))).stem
        for nb in _notebooks_of([entry], available):
            if nb not in seen:
                seen.add(nb)
                rows.append((chapter, nb))
    rows += [(UNLISTED, nb) for nb in available if nb not in seen]
    return rows


def matrix(root: Path = ROOT, chapter: str | None = None) -> dict:
    """The ``strategy.matrix`` of the workflow's execute job (one job per notebook)."""
    rows = toc_notebooks(root)
    if chapter:
        chapters = sorted({c for c, _ in rows})
        rows = [(c, nb) for c, nb in rows if c == chapter]
        if not rows:
            raise MatrixError(f"no notebook belongs to chapter {chapter!r}; "
                              f"chapters with notebooks: {', '.join(chapters)}")
    if not rows:
        raise MatrixError(f"no notebook under {root / 'notebooks'}")
    return {"include": [{"chapter": c, "notebook": nb} for c, nb in rows]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--chapter", default="", help="only this chapter's notebooks (e.g. alasso); empty: all")
    parser.add_argument("--names", action="store_true", help="print the notebook names, one a line")
    args = parser.parse_args(argv)
    try:
        result = matrix(ROOT, args.chapter.strip() or None)
    except MatrixError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.names:
        print("\n".join(row["notebook"] for row in result["include"]))
    else:
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
