"""The canonical head of every notebook (tools/notebook_header.py): the Colab cell, then the parameters."""
from __future__ import annotations

import json
import subprocess
import sys
import types
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

import notebook_header  # noqa: E402

NOTEBOOKS = notebook_header.notebooks(ROOT)
URL = notebook_header.repository_url(ROOT / "_config.yml")
ENV = tuple(notebook_header.ENVIRONMENT.values())


def _source(cell: dict) -> str:
    return "".join(cell["source"])


def _old_style(tmp_path: Path) -> Path:
    nb = {"cells": [
        {"cell_type": "markdown", "id": "title", "metadata": {}, "source": ["# A title"]},
        {"cell_type": "code", "execution_count": None, "id": "abc123", "metadata": {"tags": ["parameters"]},
         "outputs": [], "source": ["profile = \"quick\"\n", "device = \"auto\"\n", "seed = 0\n", "dataset = None"]},
        {"cell_type": "code", "execution_count": None, "id": "body", "metadata": {}, "outputs": [],
         "source": ["print(profile, dataset)"]},
    ], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    path = tmp_path / "demo_1_x.ipynb"
    path.write_text(json.dumps(nb, indent=1) + "\n")
    return path


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_every_notebook_has_the_canonical_head(path):
    assert not notebook_header.fix(path, URL, write=False), (
        f"{path.name}: its head is not canonical; run `python tools/notebook_header.py`")


def test_the_check_mode_names_a_notebook_to_fix_and_the_tool_fixes_it(tmp_path):
    path = _old_style(tmp_path)
    tool = [sys.executable, str(ROOT / "tools" / "notebook_header.py")]
    check = subprocess.run(tool + ["--check", str(path)], capture_output=True, text=True)
    assert check.returncode == 1 and str(path) in check.stdout
    assert subprocess.run(tool + [str(path)], capture_output=True, text=True).returncode == 0
    assert subprocess.run(tool + ["--check", str(path)], capture_output=True, text=True).returncode == 0
    cells = json.loads(path.read_text())["cells"]
    assert [c["id"] for c in cells] == ["title", notebook_header.COLAB_CELL_ID, "abc123", "body"]
    assert cells[1]["metadata"]["tags"] == ["colab-install", "remove-cell"]  # hidden from the page
    assert cells[2]["metadata"]["tags"] == ["parameters"]
    assert _source(cells[3]) == "print(profile, dataset)"  # the rest untouched
    once = path.read_text()
    notebook_header.fix(path, URL)
    assert path.read_text() == once  # idempotent


def test_a_notebook_without_a_parameters_cell_gets_one_with_a_fresh_id(tmp_path):
    path = _old_style(tmp_path)
    nb = json.loads(path.read_text())
    del nb["cells"][1]
    out = notebook_header.with_canonical_head(nb, URL)
    assert [c["metadata"].get("tags") for c in out["cells"][1:3]] == [notebook_header.COLAB_TAGS, ["parameters"]]
    assert len({c["id"] for c in out["cells"]}) == len(out["cells"])


def test_a_notebook_must_start_with_markdown():
    with pytest.raises(notebook_header.HeaderError, match="markdown"):
        notebook_header.with_canonical_head({"cells": [{"cell_type": "code", "source": "x = 1",
                                                        "metadata": {}}]}, URL)


def test_the_repository_url_is_configured_once_in_config_yml(tmp_path):
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    assert URL == config["repository"]["url"].rstrip("/")
    assert config["html"]["use_repository_button"] and config["launch_buttons"]["colab_url"]
    for path in NOTEBOOKS:
        colab = json.loads(path.read_text())["cells"][1]
        assert f"git+{URL}\"" in _source(colab), path.name
    other = tmp_path / "_config.yml"
    other.write_text(yaml.safe_dump({"repository": {"url": "https://github.com/someone/fork"}}))
    assert "git+https://github.com/someone/fork" in _source(
        notebook_header.colab_cell(notebook_header.repository_url(other)))
    other.write_text(yaml.safe_dump({"repository": {"url": "not a url"}}))
    with pytest.raises(notebook_header.HeaderError, match="repository.url"):
        notebook_header.repository_url(other)


def test_the_colab_cell_installs_on_colab_only(monkeypatch):
    source = _source(notebook_header.colab_cell(URL))
    calls = []
    monkeypatch.setattr(subprocess, "run", lambda *args, **kwargs: calls.append((args, kwargs)))
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    exec(source, {})
    assert calls == []  # outside Colab: nothing
    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    exec(source, {})
    (command,), kwargs = calls[0]
    assert command[:4] == [sys.executable, "-m", "pip", "install"]
    assert command[-1] == f"clutils[{notebook_header.COLAB_EXTRAS}] @ git+{URL}" and kwargs == {"check": True}


def _parameters(env: dict[str, str], monkeypatch, injected: str = "") -> dict:
    for name in ENV:
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    namespace: dict = {}
    exec(notebook_header.PARAMETERS_SOURCE, namespace)
    exec(injected, namespace)  # papermill's injected cell runs right after the parameters cell
    return {k: namespace[k] for k in notebook_header.ENVIRONMENT}


def test_the_parameters_default_to_the_environment_and_papermill_overrides_them(monkeypatch):
    assert _parameters({}, monkeypatch) == {"profile": "quick", "device": "auto", "seed": 0, "dataset": None}
    env = {"CLUTILS_PROFILE": "smoke", "CLUTILS_DEVICE": "cpu", "CLUTILS_SEED": "3",
           "CLUTILS_DATASET": "fashion-mnist"}
    assert _parameters(env, monkeypatch) == {"profile": "smoke", "device": "cpu", "seed": 3,
                                             "dataset": "fashion-mnist"}
    assert _parameters({"CLUTILS_DATASET": ""}, monkeypatch)["dataset"] is None  # empty: the paper's data
    injected = '# Parameters\nprofile = "paper"\ndevice = "cuda"\nseed = 1\ndataset = None\n'
    assert _parameters(env, monkeypatch, injected) == {"profile": "paper", "device": "cuda", "seed": 1,
                                                       "dataset": None}


def test_the_dataset_line_quoted_by_the_data_error_is_in_the_parameters_cell():
    assert notebook_header.DATASET_LINE in notebook_header.PARAMETERS_SOURCE.splitlines()[-1]


@pytest.mark.parametrize("path", sorted((ROOT / "notebooks").glob("*.ipynb")), ids=lambda p: p.stem)
def test_every_notebook_ends_with_three_to_five_exercises_and_hidden_solutions(path):
    """The teaching pattern: '## Exercises', then 3-5 exercises, each followed by one hidden solution cell.

    The solutions are ordinary code cells, so every build and the smoke tests execute them.
    """
    cells = json.loads(path.read_text())["cells"]
    heading = [i for i, c in enumerate(cells) if c["cell_type"] == "markdown"
               and "".join(c["source"]).startswith("## Exercises")]
    assert len(heading) == 1, f"{path.name} needs one '## Exercises' section"
    tail = cells[heading[0] + 1:]
    solutions = [c for c in tail if "solution" in c["metadata"].get("tags", [])]
    assert 3 <= len(solutions) <= 5, f"{path.name} has {len(solutions)} exercises"
    for cell in solutions:
        assert cell["cell_type"] == "code" and "hide-cell" in cell["metadata"]["tags"]
    exercises = [c for c in tail if c["cell_type"] == "markdown" and "".join(c["source"]).startswith("### Exercise")]
    assert len(exercises) == len(solutions), f"{path.name}: one solution cell per exercise"
    before = [c for c in cells[:heading[0]] if "solution" in c["metadata"].get("tags", [])]
    assert not before, f"{path.name}: solution cells belong after '## Exercises'"
