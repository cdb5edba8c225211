"""Every notebook under notebooks/ runs in the smoke profile (papermill, like the book build).

The executed copies land in the book build's cache (``_build/executed/``), so
the browser test's smoke book and this test execute each notebook once
between them; a notebook whose code, parameters and ``clutils`` are unchanged
since it last passed is not executed again.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

import build_book  # noqa: E402

NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
RUN = build_book.Run(
    profile="smoke",
    device=os.environ.get("BOOK_TEST_DEVICE", "auto"),
    dataset=os.environ.get("BOOK_TEST_DATASET", "fashion-mnist") or None,
    seed=0,
)
PATHS = build_book.Paths(ROOT, ROOT / "_build")

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_in_the_smoke_profile(path):
    result = build_book.execute_notebook(path, RUN, PATHS, log=lambda *_: None)
    assert result.status != "failed", result.error
    executed = json.loads((PATHS.executed(RUN) / path.name).read_text())
    outputs = [o for c in executed["cells"] if c["cell_type"] == "code" for o in c.get("outputs", [])]
    assert any("image/png" in o.get("data", {}) for o in outputs), f"{path.name} shows no figure"
    claims = PATHS.executed(RUN) / "claims" / f"{path.stem}.json"
    if claims.exists() and json.loads(claims.read_text())["claims"]:
        # The chapter's last cell before the exercises (solution cells) displays the scorecard.
        last = [c for c in executed["cells"]
                if c["cell_type"] == "code" and "solution" not in c["metadata"].get("tags", [])][-1]
        html = "".join("".join(o.get("data", {}).get("text/html", "")) for o in last.get("outputs", []))
        assert "clutils-scorecard" in html, f"{path.name} must end (before its exercises) by displaying its scorecard"
