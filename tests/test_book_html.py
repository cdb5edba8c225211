"""The smoke book's HTML and generated pages, read as files (no browser).

* every image of a notebook page has alt text, and not a file name (tools/sphinx_alt_text.py);
* the teaching page's table of timings (tools/book_timings.py) lists every notebook with the
  time it took in this build, labelled with the build's profile.

The session fixture builds the smoke book like tests/test_book_browser.py does; the executed
notebooks are cached between the two, and Sphinx rebuilds only what changed.
"""
from __future__ import annotations

import html.parser
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

import build_book  # noqa: E402
import sphinx_alt_text  # noqa: E402

BUILD = ROOT / "_build"
RUN = build_book.Run("smoke", os.environ.get("BOOK_TEST_DEVICE", "auto"),
                     os.environ.get("BOOK_TEST_DATASET", "fashion-mnist") or None, 0)
NOTEBOOKS = sorted(p.stem for p in (ROOT / "notebooks").glob("*.ipynb"))

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def smoke_book() -> Path:
    command = [sys.executable, str(ROOT / "tools" / "build_book.py"), "--profile", RUN.profile,
               "--device", RUN.device, "--dataset", RUN.dataset or ""]
    start = time.perf_counter()
    proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.fail(f"the smoke build failed after {time.perf_counter() - start:.0f} s:\n"
                    f"{(proc.stdout + proc.stderr)[-6000:]}")
    return BUILD / "html"


class _Images(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.images: list[dict[str, str | None]] = []

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.images.append(dict(attrs))


def images_of(page: Path) -> list[dict[str, str | None]]:
    parser = _Images()
    parser.feed(page.read_text(encoding="utf-8"))
    return parser.images


def test_every_image_of_a_notebook_page_has_alt_text(smoke_book):
    pages = sorted((smoke_book / "notebooks").glob("*.html"))
    assert {p.stem for p in pages} >= set(NOTEBOOKS)
    figures = 0
    for page in pages:
        for image in images_of(page):
            alt = (image.get("alt") or "").strip()
            assert alt, f"{page.name}: an image without alt text: {image.get('src', '')[:80]}"
            assert not sphinx_alt_text.FILE_NAME.match(alt), f"{page.name}: alt text is a file name: {alt}"
            figures += "_images/" in (image.get("src") or "")
    assert figures >= len(NOTEBOOKS), "the notebook pages show fewer figures than notebooks"


def test_the_code_the_chapters_pull_from_clutils_is_on_the_page(smoke_book):
    """Each chapter shows its algorithm's code beside the formula, read from clutils at build time."""
    for page, code in [("book/ar1.html", "lwf_lambdas"), ("book/den.html", "unit_mask")]:
        text = re.sub(r"<[^>]+>", "", (smoke_book / page).read_text(encoding="utf-8"))  # the highlighted code as text
        assert f"def {code}(" in text, f"{code} not shown on {page}"


def test_the_teaching_table_lists_every_notebook_with_its_time(smoke_book):
    table = (BUILD / "src" / "book" / "_generated" / "timings.md").read_text(encoding="utf-8")
    saved = json.loads((BUILD / "executed" / RUN.tag / "timings.json").read_text())
    assert saved["profile"] == "smoke" and set(saved["notebooks"]) == set(NOTEBOOKS)
    for name in NOTEBOOKS:
        row = re.search(rf"^\| \{{doc\}}`{name} </notebooks/{name}>` \| [^|]+ \| ([^|]+) \|$", table, re.MULTILINE)
        assert row, f"the timings table has no row for {name}"
        assert re.fullmatch(r"(\d+ min \d\d s|\d+ s)", row.group(1).strip()), (name, row.group(1))
        assert saved["notebooks"][name] > 0
    assert "**smoke-profile** timings" in table  # a smoke book says its timings are smoke timings
