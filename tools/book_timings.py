"""How long each notebook took in the build that made the book: a JSON file and a table for the teaching page.

``tools/build_book.py`` calls :func:`collect` after the notebooks ran (or were gathered), writes
the result with :func:`write_json` to ``_build/executed/<run>/timings.json`` and renders
:func:`to_markdown` into ``book/_generated/timings.md`` of the staged sources, which
``book/teaching.md`` includes. The time of a notebook is papermill's own record of its last
execution (``metadata.papermill.duration``, kernel start included), so a notebook re-used from the
cache keeps the time it took when it ran. Nothing here is typed in: a book built in the smoke
profile shows smoke timings and says so.
"""
from __future__ import annotations

import json
import platform
from pathlib import Path
from typing import Iterable

#: Chapter names of the notebooks' prefixes (``<chapter>_<n>_<topic>.ipynb``); others are capitalised.
CHAPTERS = {"intro": "Introduction", "alasso": "ALASSO", "ar1": "AR1", "spp": "SPP", "hat": "HAT",
            "replay": "Replay", "dgr": "DGR"}


def chapter_of(name: str) -> str:
    prefix = name.split("_", 1)[0]
    return CHAPTERS.get(prefix, prefix.capitalize())


def notebook_seconds(executed: Path) -> float | None:
    """papermill's duration of the executed copy ``executed`` (None: no copy or no record)."""
    try:
        value = json.loads(executed.read_text(encoding="utf-8"))["metadata"]["papermill"]["duration"]
        return float(value) if value is not None else None
    except (OSError, ValueError, KeyError, TypeError):
        return None


def collect(executed_dir: Path, names: Iterable[str], *, profile: str, device: str, dataset: str | None,
            seed: int, cores: int, jobs: int | None, threads: int | None) -> dict:
    """The timings of ``names`` (executed copies in ``executed_dir``) with what ran them."""
    return {
        "profile": profile, "device": device, "dataset": dataset, "seed": seed,
        "cpu_cores": cores, "jobs": jobs, "threads_per_notebook": threads,
        "machine": f"{platform.system()} {platform.machine()}",
        "notebooks": {name: notebook_seconds(executed_dir / f"{name}.ipynb") for name in names},
    }


def write_json(path: Path, timings: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(timings, indent=1) + "\n", encoding="utf-8")


def format_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "not measured"
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest:02d} s"


def to_markdown(timings: dict) -> str:
    """The table of the teaching page: every notebook, its chapter and its time, with what ran it."""
    profile = timings["profile"]
    data = timings.get("dataset") or "each paper's own dataset"
    threads = timings.get("threads_per_notebook")
    thread_text = (f"{threads} CPU thread{'s' if threads != 1 else ''} per notebook" if threads
                   else "all CPU threads")
    lines = []
    if profile != "quick":
        lines += [
            "```{note}",
            f"These are **{profile}-profile** timings: the build that made this page ran the `{profile}`",
            "profile, not `quick`. The book built with `make book` (the `quick` profile) shows the quick",
            "profile's times here.",
            "```",
            "",
        ]
    lines += [
        f"Measured by the build that made this page: profile `{profile}`, device `{timings['device']}`, "
        f"{data}, {thread_text}, on a machine with {timings['cpu_cores']} CPU cores "
        f"({timings.get('machine', '')}). Each time is the notebook's whole run, kernel start included.",
        "",
        f"| notebook | chapter | time ({profile}) |",
        "| --- | --- | --- |",
    ]
    notebooks = timings["notebooks"]
    for name, seconds in notebooks.items():
        lines.append(f"| {{doc}}`{name} </notebooks/{name}>` | {chapter_of(name)} | {format_seconds(seconds)} |")
    known = [s for s in notebooks.values() if s is not None]
    if known:
        lines.append(f"| **all {len(notebooks)} notebooks, one after the other** | | "
                     f"**{format_seconds(sum(known))}** |")
    return "\n".join(lines) + "\n"
