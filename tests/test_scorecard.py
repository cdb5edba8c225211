"""The reproduction scorecard API (clutils.scorecard)."""
from __future__ import annotations

import ast
import json
from pathlib import Path

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


def test_only_empirical_claims_count_in_the_tally(tmp_path):
    card = _card(tmp_path)
    card.check("measured, held", paper="p", measured=1, reproduced=True, core=True, kind="empirical")
    card.check("measured, not held", paper="p", measured=1, reproduced=False)  # empirical by default
    card.check("a formula plotted", paper="Fig. 1", measured="ok", reproduced=True, kind="analytic")
    card.check("the paper's own numbers", paper="Table 4", measured="ok", reproduced=True, kind="arithmetic")
    assert [c.kind for c in card.claims] == ["empirical", "empirical", "analytic", "arithmetic"]
    assert "1 of 2 claims reproduced" in repr(card)
    html = card._repr_html_()
    assert "1 of 2 claims reproduced" in html and "2 analytic or arithmetic checks listed apart" in html
    md = scorecard.to_markdown(scorecard.load(tmp_path))
    assert "**1 of 2 claims reproduced** (1 of 1 core claims)" in md
    assert "Analytic and arithmetic checks (not counted):" in md
    # the checks listed apart come after the counted table, in their own table with a kind column
    counted, apart = md.split("Analytic and arithmetic checks (not counted):")
    assert "a formula plotted" in apart and "the paper's own numbers" in apart and "| analytic |" in apart
    assert "a formula plotted" not in counted and "measured, held" in counted


def test_unknown_kind_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="unknown claim kind 'obvious'"):
        _card(tmp_path).check("c", paper="p", measured=1, reproduced=True, kind="obvious")


def test_stand_in_names_what_ran_instead_of_the_papers_setting():
    paper = {"dataset": "CIFAR-10/100", "tasks": 30, "model": "Table D conv net"}
    assert scorecard.stand_in(paper, {"dataset": "Fashion-MNIST", "tasks": 5, "model": "Table D conv net"}) == (
        "5 tasks of Fashion-MNIST")
    assert scorecard.stand_in({"dataset": "MNIST", "tasks": 30, "model": "MLP 2000x2000"},
                              {"dataset": "MNIST", "tasks": 20, "model": "MLP 128x128"}) == "20 tasks of MNIST, MLP 128x128"
    # the paper's own setting: no label (dataset names compared without case)
    assert scorecard.stand_in({"dataset": "MNIST", "tasks": 30}, {"dataset": "mnist", "tasks": 30}) == ""
    with pytest.raises(ValueError, match="dataset, tasks and model"):
        scorecard.stand_in({"epochs": 20}, {"epochs": 5})


def test_a_stand_in_is_in_the_claims_title(tmp_path):
    card = _card(tmp_path)
    label = scorecard.stand_in({"dataset": "CIFAR-10/100", "tasks": 30}, {"dataset": "Fashion-MNIST", "tasks": 5})
    card.check("Split CIFAR-10/100: ALASSO beats SI", paper="p", measured=1, reproduced=True, stand_in=label)
    title = "Split CIFAR-10/100: ALASSO beats SI (stand-in: 5 tasks of Fashion-MNIST)"
    assert card.claims[0].title == title
    assert title in card._repr_html_() and title in scorecard.to_markdown(card.claims)
    assert title in card.claims[0].describe() and list(card.table()["claim"]) == [title]
    assert scorecard.load(tmp_path)[0].title == title


def test_beyond_seed_noise_decides_on_the_mean_difference_against_its_standard_error():
    # the issue's case: ahead on average, but by less than the seeds' spread
    close = scorecard.beyond_seed_noise([0.80, 0.75, 0.82], [0.788, 0.76, 0.80], seeds=[0, 1, 2])
    assert close.differences == pytest.approx((0.012, -0.01, 0.02))
    assert close.mean == pytest.approx(0.022 / 3)
    assert close.stderr == pytest.approx(0.0155349 / 3 ** 0.5, rel=1e-4)
    assert close.mean > 0 and not close.held
    clear = scorecard.beyond_seed_noise([0.80, 0.75, 0.82], [0.70, 0.66, 0.70])
    assert clear.held and clear.seeds == (0, 1, 2)
    assert clear.rule == "mean paired difference over 3 seeds > 2 standard errors of the difference"
    assert "+10.0, +9.0, +12.0" in clear.summary() and "mean +10.3 +/- 0.9 points" in clear.summary()
    # one side a threshold; identical positive differences (zero spread) hold, zero differences do not
    assert scorecard.beyond_seed_noise([0.95, 0.97, 0.96], 0.9).held
    assert not scorecard.beyond_seed_noise([0.5, 0.5], [0.5, 0.5]).held
    assert scorecard.beyond_seed_noise([0.6, 0.6], [0.5, 0.5]).held


def test_beyond_seed_noise_rejects_what_it_cannot_decide():
    with pytest.raises(ValueError, match="at least 2 seeds"):
        scorecard.beyond_seed_noise([0.9], [0.8])
    with pytest.raises(ValueError, match="one value per seed"):
        scorecard.beyond_seed_noise([0.9, 0.8], [0.8])
    with pytest.raises(ValueError, match="nan"):
        scorecard.beyond_seed_noise([0.9, float("nan")], [0.8, 0.7])
    with pytest.raises(ValueError, match="3 seeds for 2 values"):
        scorecard.beyond_seed_noise([0.9, 0.8], [0.8, 0.7], seeds=[0, 1, 2])


def test_a_multi_seed_claim_says_which_seeds_ran(tmp_path):
    card = _card(tmp_path)
    card.check("A beats B", paper="p", measured="m", reproduced=True, core=True, seeds=[0, 1, 2])
    assert "seeds 0, 1, 2" in card._repr_html_() and "seeds 0, 1, 2" in card.claims[0].describe()
    assert "seeds 0, 1, 2" in scorecard.to_markdown(scorecard.load(tmp_path))


def test_core_claims_run_at_least_three_seeds_outside_smoke():
    assert scorecard.core_seeds("quick", seed=5) == [5, 6, 7]
    assert len(scorecard.core_seeds("paper")) >= 3 and len(scorecard.core_seeds("smoke")) == 2
    with pytest.raises(ValueError, match="unknown profile 'fast'"):
        scorecard.core_seeds("fast")


def _notebook_checks():
    """Every ``card.check(...)`` call in the notebooks' code cells, as (notebook, keywords)."""
    calls = []
    for path in sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb")):
        for cell in json.loads(path.read_text())["cells"]:
            if cell["cell_type"] != "code":
                continue
            source = "".join(cell["source"])
            for node in ast.walk(ast.parse(source)):
                if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                        and node.func.attr == "check" and getattr(node.func.value, "id", "") == "card"):
                    calls.append((path.stem, {k.arg: k.value for k in node.keywords}))
    return calls


def test_every_notebook_claim_names_its_kind():
    calls = _notebook_checks()
    assert len(calls) > 40  # every chapter's claims were found
    for notebook, keywords in calls:
        assert "kind" in keywords, f"a claim of {notebook} does not say its kind"
        kind = keywords["kind"]
        assert isinstance(kind, ast.Constant) and kind.value in scorecard.KINDS, notebook
    kinds = {keywords["kind"].value for _, keywords in calls}
    assert kinds == set(scorecard.KINDS)  # analytic and arithmetic checks exist and are labelled
    # a core claim is a measurement, decided on several seeds
    for notebook, keywords in calls:
        core = keywords.get("core")
        if core is not None and getattr(core, "value", False) is True:
            assert keywords["kind"].value == "empirical" and "seeds" in keywords, notebook


# ----------------------------------------------------------------------------- a check's display


def test_a_check_displays_as_one_sentence_not_a_repr(tmp_path):
    from IPython.core.formatters import format_display_data

    card = Scorecard("Demo", profile="quick", device="cpu", dataset="digits", directory=tmp_path)
    held = card.check("Fine-tuning forgets <task 1>", paper="Fig. 3", measured=0.213,
                      reproduced=True, core=True)
    failed = card.check("SI beats EWC", paper="Table 2", measured="40% vs 45%", reproduced=False)
    analytic = card.check("The surrogate is exact at the start", paper="Eq. 4", measured="0.328 vs 0.328",
                          reproduced=True, kind="analytic")
    bundle, _ = format_display_data(held)
    html, markdown = bundle["text/html"], bundle["text/markdown"]
    for text in (html, markdown, held.sentence()):
        assert "Claim(" not in text and "\n" not in text
        assert "reproduced" in text and "0.213" in text and "Fig. 3" in text and "core" in text
    assert "&lt;task 1&gt;" in html and "<task 1>" not in html  # the title is escaped
    assert "#1a7f37" in html
    failed_html = format_display_data(failed)[0]["text/html"]
    assert "✗ not reproduced" in failed_html and "#cf222e" in failed_html and "core" not in failed_html
    assert analytic.sentence().startswith("✓ holds: The surrogate is exact at the start. Measured 0.328 vs 0.328")
