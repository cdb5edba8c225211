"""``clutils run --seeds``: one run per seed, stacked when the strategy stacks, mean and std per metric."""
from __future__ import annotations

import json

import pytest

from clutils import cli
from clutils.data.named import make_benchmark
from clutils.models import build_model
from clutils.strategies import make
from clutils.train import TrainConfig, fit

SMOKE = ["run", "--benchmark", "permuted-mnist", "--dataset", "digits", "--profile", "smoke", "--no-progress",
         "--tasks", "2", "--hidden", "16", "--epochs", "1"]

pytestmark = pytest.mark.usefixtures("one_thread")


def test_seeds_stack_and_match_single_seed_runs(capsys, tmp_path):
    out = tmp_path / "seeds.json"
    assert cli.main([*SMOKE, "--strategy", "si", "--seeds", "0,1", "--json", str(out)]) == cli.EXIT_OK
    text = capsys.readouterr().out
    assert "2 seeds, trained stacked" in text
    assert "ACC" in text and "+-" in text and "mean +- std over seeds 0, 1" in text
    payload = json.loads(out.read_text())
    assert payload["seeds"] == [0, 1] and payload["how"] == "stacked"
    for s, stored in zip((0, 1), payload["results"]):
        assert cli.main([*SMOKE, "--strategy", "si", "--seed", str(s), "--json", str(tmp_path / f"{s}.json")]) == 0
        single = json.loads((tmp_path / f"{s}.json").read_text())
        assert stored["accuracy_matrix"] == single["accuracy_matrix"]
        assert stored["config"]["seed"] == s


def test_a_strategy_that_cannot_stack_runs_the_seeds_in_turn(capsys):
    assert cli.main([*SMOKE, "--strategy", "joint", "--seeds", "3,4"]) == cli.EXIT_OK
    text = capsys.readouterr().out
    assert "2 seeds, trained sequential" in text and "joint" in text


@pytest.mark.parametrize("value", ["", "1,1", "0,x", "-1"])
def test_bad_seed_lists_are_refused(capsys, value):
    with pytest.raises(SystemExit) as info:
        cli.main([*SMOKE, "--seeds", value])
    assert info.value.code == cli.EXIT_USAGE
    assert "--seeds" in capsys.readouterr().err


def test_seeds_refuse_a_run_dir(capsys, tmp_path):
    with pytest.raises(SystemExit):
        cli.main([*SMOKE, "--seeds", "0,1", "--run-dir", str(tmp_path / "run")])
    assert "--seeds does not checkpoint" in capsys.readouterr().err
