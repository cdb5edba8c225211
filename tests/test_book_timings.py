"""The teaching page's table of notebook timings, generated from the build (tools/book_timings.py)."""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

import book_timings  # noqa: E402
import build_book  # noqa: E402


def _executed(folder: Path, name: str, seconds: float | None) -> None:
    meta = {"papermill": {"duration": seconds}} if seconds is not None else {}
    (folder / f"{name}.ipynb").write_text(json.dumps({"cells": [], "metadata": meta}))


def _collect(folder: Path, names, profile="quick"):
    return book_timings.collect(folder, names, profile=profile, device="cpu", dataset=None, seed=0,
                                cores=2, jobs=1, threads=1)


def test_every_notebook_is_listed_with_its_time(tmp_path):
    _executed(tmp_path, "intro_forgetting", 83.4)
    _executed(tmp_path, "alasso_1_surrogates", 7.2)
    _executed(tmp_path, "ar1_2_accuracy", 245.0)
    timings = _collect(tmp_path, ["intro_forgetting", "alasso_1_surrogates", "ar1_2_accuracy"])
    assert timings["notebooks"] == {"intro_forgetting": 83.4, "alasso_1_surrogates": 7.2, "ar1_2_accuracy": 245.0}
    text = book_timings.to_markdown(timings)
    rows = {m.group(1): (m.group(2), m.group(3)) for m in
            re.finditer(r"^\| \{doc\}`(\w+) </notebooks/\1>` \| ([^|]+) \| ([^|]+) \|$", text, re.MULTILINE)}
    assert rows == {"intro_forgetting": ("Introduction", "1 min 23 s"), "alasso_1_surrogates": ("ALASSO", "7 s"),
                    "ar1_2_accuracy": ("AR1", "4 min 05 s")}
    assert "5 min 36 s" in text  # the total
    assert "profile `quick`" in text and "2 CPU cores" in text and "{note}" not in text


def test_a_smoke_build_labels_its_timings_as_smoke(tmp_path):
    _executed(tmp_path, "intro_forgetting", 3.0)
    text = book_timings.to_markdown(_collect(tmp_path, ["intro_forgetting"], profile="smoke"))
    assert "**smoke-profile** timings" in text and "| time (smoke) |" in text


def test_a_notebook_without_a_record_says_so(tmp_path):
    _executed(tmp_path, "ar1_1_scenarios", None)
    text = book_timings.to_markdown(_collect(tmp_path, ["ar1_1_scenarios", "ar1_9_missing"]))
    assert text.count("not measured") == 2 and "all 2 notebooks" not in text


def test_the_build_writes_the_json_and_the_page_table(tmp_path):
    paths = build_book.Paths(ROOT, tmp_path / "_build")
    run = build_book.Run("smoke", "cpu", "fashion-mnist", 0)
    paths.executed(run).mkdir(parents=True)
    _executed(paths.executed(run), "intro_forgetting", 12.0)
    results = [build_book.NotebookResult("intro_forgetting", "cached", 0.1),
               build_book.NotebookResult("ar1_1_scenarios", "failed", 1.0, "boom")]
    build_book.write_timings(paths, run, results, jobs=None, cores=2, html=True, log=lambda *_: None)
    saved = json.loads((paths.executed(run) / "timings.json").read_text())
    assert saved["notebooks"] == {"intro_forgetting": 12.0} and saved["profile"] == "smoke"
    page = (paths.src / "book" / "_generated" / "timings.md").read_text()
    assert "intro_forgetting" in page and "12 s" in page


def test_the_teaching_page_includes_the_generated_table():
    text = (ROOT / "book" / "teaching.md").read_text()
    assert "```{include} _generated/timings.md" in text
    assert not re.search(r"\b\d+ (s|min|seconds|minutes)\b", text), "no typed-in timings on the teaching page"
