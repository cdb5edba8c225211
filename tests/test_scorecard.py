"""The reproduction scorecard API (clutils.scorecard)."""
from __future__ import annotations

import json

import pytest

from clutils import scorecard
from clutils.scorecard import Scorecard


def _card(tmp_path, profile="quick", notebook="chapter_nb", **kw):
    return Scorecard("Chapter", profile=profile, device="cpu", dataset="fashion-mnist", seed=0,
                     directory=tmp_path, notebook=notebook, **kw)


def test_check_records_and_writes_json(tmp_path):
    card = _card(tmp_path)
    claim = card.check("A forgets", paper="Fig. 3: 0.1", measured=0.12345, reproduced=True, core=True,
                       criterion="x < 0.5")
    assert claim.measured == "0.123" and claim.value == pytest.approx(0.12345)
    assert claim.profile == "quick" and claim.device == "cpu" and claim.dataset == "fashion-mnist"
    data = json.loads((tmp_path / "chapter_nb.json").read_text())
    assert data["claims"][0]["claim"] == "A forgets"
    assert data["claims"][0]["core"] is True


def test_a_new_card_starts_empty(tmp_path):
    _card(tmp_path).check("old", paper="p", measured="m", reproduced=False, core=True)
    _card(tmp_path)  # the notebook is executed again
    assert scorecard.load(tmp_path) == []


def test_environment_sets_directory_and_notebook(tmp_path, monkeypatch):
    monkeypatch.setenv(scorecard.ENV_DIR, str(tmp_path))
    monkeypatch.setenv(scorecard.ENV_NOTEBOOK, "intro_forgetting")
    card = Scorecard("Intro", profile="smoke", device="cpu", dataset=None)
    card.check("c", paper="p", measured=1, reproduced=True)
    assert (tmp_path / "intro_forgetting.json").exists()
    assert scorecard.load(tmp_path)[0].dataset == "paper default"


def test_without_directory_nothing_is_written(tmp_path, monkeypatch):
    monkeypatch.delenv(scorecard.ENV_DIR, raising=False)
    monkeypatch.chdir(tmp_path)
    card = Scorecard("Live", profile="quick", device="cpu", dataset=None)
    card.check("c", paper="p", measured=1, reproduced=True)
    assert card.path is None and list(tmp_path.iterdir()) == []


def test_core_failures_only_in_strict_profiles(tmp_path):
    quick = _card(tmp_path, notebook="a")
    quick.check("core ok", paper="p", measured=1, reproduced=True, core=True)
    quick.check("core broken", paper="p", measured=1, reproduced=False, core=True)
    quick.check("minor broken", paper="p", measured=1, reproduced=False, core=False)
    smoke = _card(tmp_path, profile="smoke", notebook="b")
    smoke.check("core broken in smoke", paper="p", measured=1, reproduced=False, core=True)
    failures = scorecard.core_failures(scorecard.load(tmp_path))
    assert [c.claim for c in failures] == ["core broken"]
    assert "core broken" in failures[0].describe() and "fashion-mnist" in failures[0].describe()


def test_load_filters_by_notebook(tmp_path):
    _card(tmp_path, notebook="keep").check("k", paper="p", measured=1, reproduced=True)
    _card(tmp_path, notebook="gone").check("g", paper="p", measured=1, reproduced=True)
    assert [c.claim for c in scorecard.load(tmp_path, ["keep"])] == ["k"]


def test_table_html_and_markdown_say_what_ran(tmp_path):
    card = _card(tmp_path)
    card.check("held", paper="Fig. 1", measured="0.9 -> 0.1", reproduced=True, core=True)
    card.check("did not | hold", paper="Table 2", measured=0.5, reproduced=False)
    frame = card.table()
    assert list(frame["verdict"]) == ["✓ reproduced", "✗ not reproduced"]
    html = card._repr_html_()
    assert "1 of 2 claims reproduced" in html and "not reproduced" in html and "fashion-mnist" in html
    md = scorecard.to_markdown(card.claims, ["no_claims_nb"])
    assert "## Chapter" in md and "**1 of 2 claims reproduced**" in md
    assert "&#124;" in md  # a pipe in a claim does not break the table
    assert "fashion-mnist" in md and "`no_claims_nb`" in md
    assert "No notebook has recorded a claim yet." in scorecard.to_markdown([])
