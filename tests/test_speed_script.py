"""Smoke tests of benchmarks/speed.py: a tiny configuration end to end, and its refusal of
bad arguments. Nothing here is timed; the figures the script prints are not checked."""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "speed.py"
TINY = ["--widths", "16", "--tasks", "2", "--samples", "300", "--batch-size", "64",
        "--warmup-steps", "1", "--threads", "1"]


def load_script():
    spec = importlib.util.spec_from_file_location("speed_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def speed():
    return load_script()


@pytest.fixture
def offline_env(tmp_path):
    """No Fashion-MNIST anywhere (an empty data root and Debian folder): synthetic data."""
    empty = tmp_path / "empty"
    empty.mkdir()
    env = dict(os.environ, CLUTILS_DATA=str(empty), CLUTILS_DEBIAN_DATASETS=str(empty))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH", "")]))
    return env


def run_script(args, env, timeout=900):
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, check=False,
                          env=env, cwd=str(REPO), timeout=timeout)


def table_rows(stdout: str) -> list[list[str]]:
    """The rows of the result table: the lines after its header up to the first blank line."""
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("width") and "samples/s" in line)
    rows = []
    for line in lines[start + 1:]:
        if not line.strip():
            break
        rows.append(line.split())
    return rows


# ------------------------------------------------------------------ end to end


@pytest.mark.slow
def test_tiny_run_prints_every_row_and_skips_unimportable_avalanche(tmp_path, offline_env):
    # A package named avalanche that fails to import: the script must skip Avalanche with its reason.
    shadow = tmp_path / "shadow" / "avalanche"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('deliberately broken for the test')\n")
    env = dict(offline_env, PYTHONPATH=os.pathsep.join([str(shadow.parent), offline_env["PYTHONPATH"]]))
    out = tmp_path / "speed.json"
    done = run_script([*TINY, "--strategies", "naive,si", "--avalanche", "--clock", "cpu", "--json", str(out)], env)
    assert done.returncode == 0, done.stdout + done.stderr
    text = done.stdout

    assert "data: synthetic random tensors of Fashion-MNIST size" in text
    assert "CPU time of the process" in text
    assert "Fashion-MNIST not used" in text
    rows = table_rows(text)
    found = {(r[1], r[2]) for r in rows if r[0] == "16"}
    assert {("bare", "bare"), ("clutils", "naive"), ("clutils", "si"),
            ("avalanche", "naive"), ("avalanche", "si")} <= found, text
    for row in rows:
        if row[1] in ("bare", "clutils"):
            assert float(row[3].replace(",", "")) > 0  # samples/s
            assert "FAILED:" not in " ".join(row)
        else:
            assert "skipped:" in " ".join(row) and "not importable" in " ".join(row)
    assert "targets:" in text
    assert "clutils naive" in text.split("targets:")[1]

    payload = json.loads(out.read_text())
    by_key = {(r["width"], r["framework"], r["strategy"]): r for r in payload["rows"]}
    assert by_key[(16, "clutils", "si")]["state_per_param"] == pytest.approx(2.0)  # importance + anchor
    assert by_key[(16, "clutils", "naive")]["state_per_param"] == 0
    assert by_key[(16, "bare", "bare")]["x_bare"] == pytest.approx(1.0)
    assert by_key[(16, "avalanche", "si")]["skipped"]
    assert payload["data_fallback_reason"]


@pytest.mark.slow
def test_tiny_run_with_avalanche(tmp_path, offline_env):
    pytest.importorskip("avalanche")
    done = run_script([*TINY, "--strategies", "naive", "--avalanche"], offline_env)
    assert done.returncode == 0, done.stdout + done.stderr
    rows = {(r[1], r[2]): r for r in table_rows(done.stdout)}
    assert float(rows[("avalanche", "naive")][3].replace(",", "")) > 0, done.stdout


REPLAY = ("er", "der", "a-gem", "gem")


@pytest.mark.slow
def test_tiny_run_with_avalanche_replay_strategies(tmp_path, offline_env):
    """ER, DER, A-GEM and GEM next to Avalanche 0.6's Replay, DER, AGEM and GEM (their argument names)."""
    pytest.importorskip("avalanche")
    out = tmp_path / "speed.json"
    done = run_script([*TINY, "--strategies", "naive," + ",".join(REPLAY), "--avalanche", "--json", str(out)],
                      offline_env)
    assert done.returncode == 0, done.stdout + done.stderr
    rows = {(r[1], r[2]): r for r in table_rows(done.stdout)}
    for name in REPLAY:
        for framework in ("clutils", "avalanche"):
            assert float(rows[(framework, name)][3].replace(",", "")) > 0, (framework, name, done.stdout)
    checks = json.loads(out.read_text())["targets"]
    for name in REPLAY:
        assert any(f"clutils {name}: " in c["check"] and "faster than Avalanche" in c["check"]
                   and "not measured" not in c["check"] for c in checks), (name, checks)


def test_the_avalanche_target_is_a_lower_bound_on_avalanches_time_over_clutils(speed):
    def row(framework, strategy, train_s):
        return {"width": 8, "framework": framework, "strategy": strategy, "train_s": train_s,
                "x_bare": 1.0, "step_x_naive": 1.0, "after_task_per_epoch": None}

    fast = [row("clutils", "gem", 1.0), row("avalanche", "gem", 2.0)]
    slow = [row("clutils", "gem", 1.0), row("avalanche", "gem", 1.2)]
    assert speed.avalanche_speedup(fast[0], fast) == 2.0
    met = {line: ok for ok, line in speed.check_targets(fast) if "Avalanche" in line}
    assert list(met.values()) == [True] and "target >= 1.5" in next(iter(met))
    assert [ok for ok, line in speed.check_targets(slow) if "Avalanche" in line] == [False]
    alone = [row("clutils", "gem", 1.0)]  # Avalanche not installed: reported as not measured
    assert [ok for ok, line in speed.check_targets(alone) if "Avalanche" in line] == [False]


# ------------------------------------------------------------------ arguments


@pytest.mark.parametrize("args, message", [
    (["--strategies", "naive,no-such-strategy"], "unknown strategy 'no-such-strategy'"),
    (["--strategies", ","], "--strategies is empty"),
    (["--widths", "0"], "positive integers"),
    (["--widths", "256,abc"], "positive integers"),
    (["--tasks", "0"], "positive integer"),
    (["--epochs", "-1"], "positive integer"),
    (["--batch-size", "0"], "positive integer"),
    (["--samples", "0"], "positive integer"),
    (["--repeats", "two"], "positive integer"),
    (["--warmup-steps", "-1"], "non-negative integer"),
    (["--data", "imagenet"], "invalid choice"),
    (["--clock", "gpu"], "invalid choice"),
])
def test_bad_arguments_are_refused(speed, capsys, args, message):
    with pytest.raises(SystemExit) as exit_info:
        speed.parse_args(args)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_unknown_strategy_error_lists_the_registered_ones(speed, capsys):
    from clutils.strategies import strategy_names

    with pytest.raises(SystemExit):
        speed.parse_args(["--strategies", "bogus"])
    err = capsys.readouterr().err
    assert "registered strategies: " + ", ".join(strategy_names()) in err


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present")
def test_cuda_without_gpu_is_refused(speed, capsys):
    with pytest.raises(SystemExit) as exit_info:
        speed.parse_args(["--device", "cuda"])
    assert exit_info.value.code == 2
    assert "--device 'cuda'" in capsys.readouterr().err


def test_too_many_samples_is_refused(speed, capsys):
    with pytest.raises(SystemExit) as exit_info:
        speed.main(["--samples", "1000000", "--data", "synthetic", "--no-avalanche"])
    assert exit_info.value.code == 2
    assert "exceeds the 60,000 training samples" in capsys.readouterr().err


def test_the_command_line_exits_2_on_a_bad_strategy(offline_env):
    done = run_script(["--strategies", "bogus"], offline_env, timeout=300)
    assert done.returncode == 2
    assert "unknown strategy 'bogus'" in done.stderr and "naive" in done.stderr


def test_default_strategies_are_the_registered_targets(speed):
    from clutils.strategies import strategy_names

    registered = set(strategy_names())
    expected = [n for n in ("naive", "ewc", "si", "mas", "alasso", "cwr", "cwr+", "ar1", "hat") if n in registered]
    assert speed.default_strategies() == expected
    assert speed.parse_args([]).strategies == expected
    assert speed.parse_args(["--strategies", "si,naive,si"]).strategies == ["si", "naive"]


def test_parse_defaults(speed):
    args = speed.parse_args([])
    assert (args.widths, args.tasks, args.epochs, args.batch_size) == ([256, 1000], 3, 1, 256)
    assert args.samples is None and args.avalanche and args.repeats == 1 and args.device == "cpu"
    assert args.clock == "wall" and args.threads is None
    assert speed.parse_args(["--no-avalanche", "--widths", "8,8,4"]).widths == [8, 4]


# --- the HAT chapter: a strategy with its own network runs on the task-incremental twin
def test_tiny_run_times_hat_on_its_gated_network(tmp_path, offline_env):
    out = tmp_path / "speed.json"
    done = run_script([*TINY, "--strategies", "naive,hat", "--no-avalanche", "--json", str(out)], offline_env)
    assert done.returncode == 0, done.stdout + done.stderr
    by_key = {(r["framework"], r["strategy"]): r for r in json.loads(out.read_text())["rows"]}
    hat = by_key[("clutils", "hat")]
    assert hat["scenario"] == "task" and not hat.get("skipped") and hat["state_per_param"] >= 0
    assert hat["parameters"] > by_key[("clutils", "naive")]["parameters"]  # the gates' embeddings


# --- stacked runs (clutils.stacked): K seeds in one pass against one seed's fit
def test_tiny_stacked_run_prints_every_k_and_the_targets(tmp_path, offline_env):
    out = tmp_path / "speed.json"
    done = run_script([*TINY, "--stacked", "--strategies", "naive,si", "--copies", "1,5", "--width-sweep", "24",
                       "--clock", "cpu", "--json", str(out)], offline_env)
    assert done.returncode == 0, done.stdout + done.stderr
    text = done.stdout
    assert "targets:" in text and "width sweep (naive, 5 seeds" in text
    assert "5 stacked seeds in" in text  # the 2x target, met or missed, is printed
    assert "ESTIMATE, not measured" in text  # the paper profile on a GPU, labelled as an estimate
    rows = json.loads(out.read_text())["rows"]
    keys = {(r["width"], r["strategy"], r["copies"]) for r in rows}
    assert {(16, "naive", 0), (16, "naive", 1), (16, "naive", 5), (16, "si", 5), (24, "naive", 5)} <= keys
    for row in rows:
        assert row["train_s"] > 0 and row["bound_mib"] > 0
        if row["copies"] == 0:
            assert row["x_one_seed"] == pytest.approx(1.0)


def test_stacked_arguments(speed):
    args = speed.parse_args(["--stacked", "--copies", "2,3", "--width-sweep", "none"])
    assert args.stacked and args.copies == [2, 3] and args.width_sweep == []
    assert speed.parse_args([]).copies == [1, 2, 5, 10]


def test_the_gpu_estimate_grows_with_the_copies_and_says_it_is_one(speed):
    text = speed.paper_gpu_estimate(10)
    assert text.startswith("ESTIMATE, not measured")
    minutes = [int(part.split(" min")[0].split()[-1]) for part in text.split(", ")[-3:]]
    one, sequential, stacked = minutes
    assert one <= stacked < sequential and sequential >= 9 * one
