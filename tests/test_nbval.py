"""nbval: every notebook runs top to bottom in a Jupyter kernel exactly as a student runs it.

No papermill and no injected parameters: ``pytest --nbval-lax`` runs each notebook in a
kernel of this environment, in a subprocess whose environment sets ``CLUTILS_PROFILE=smoke``
and ``CLUTILS_DATASET=fashion-mnist``, which the parameters cell reads as its defaults
(tools/notebook_header.py). ``--nbval-lax`` fails on any error and compares the outputs of
the cells tagged ``nbval-check-output`` only: setup cells whose output is deterministic for
a profile and dataset (what runs, on which data, with which sizes). The sources are stored
without outputs, so their reference outputs come from the book's own papermill run of the
same profile (the build cache that tests/test_notebooks.py fills): the notebook run by hand
must show what the book shows.

The notebooks are never collected by a plain ``pytest`` (``testpaths = ["tests"]`` and no
``--nbval`` option), so this module is the only place they run under nbval.
"""
from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

import build_book  # noqa: E402
import notebook_header  # noqa: E402

NOTEBOOKS = notebook_header.notebooks(ROOT)
CHECK_TAG = "nbval-check-output"
RUN = build_book.Run(profile="smoke", device=os.environ.get("BOOK_TEST_DEVICE", "auto"),
                     dataset="fashion-mnist", seed=0)
PATHS = build_book.Paths(ROOT, ROOT / "_build")
#: The longest nbval may run on all notebooks (a busy 2-core machine; about two minutes on a free one).
TIMEOUT_S = 3600


def checked_ids(nb: dict) -> list[str]:
    return [c["id"] for c in nb["cells"] if CHECK_TAG in c.get("metadata", {}).get("tags", [])]


def with_reference_outputs(source: dict, executed: dict) -> dict:
    """``source`` with the outputs of its checked cells taken from ``executed`` (matched by cell id)."""
    done = {c.get("id"): c for c in executed["cells"] if c["cell_type"] == "code"}
    out = copy.deepcopy(source)
    for cell in out["cells"]:
        if CHECK_TAG in cell.get("metadata", {}).get("tags", []):
            outputs = done[cell["id"]].get("outputs", [])
            cell["outputs"] = [o for o in copy.deepcopy(outputs) if o.get("output_type") != "error"]
            cell["execution_count"] = done[cell["id"]].get("execution_count")
    return out


def student_env(**extra: str) -> dict[str, str]:
    """The environment of a student who starts Jupyter with the smoke profile on Fashion-MNIST."""
    env = {k: v for k, v in os.environ.items()
           if k not in {"CLUTILS_SCORECARD_DIR", "CLUTILS_NOTEBOOK", "CLUTILS_SEED", "PYTEST_ADDOPTS"}}
    env.update(CLUTILS_PROFILE="smoke", CLUTILS_DATASET="fashion-mnist", CLUTILS_DEVICE=RUN.device,
               OMP_NUM_THREADS="1", MKL_NUM_THREADS="1",  # as the book runs them: the same digits
               PYTHONWARNINGS="ignore::DeprecationWarning", PYTHONPATH=os.pathsep.join(
                   [str(ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
    env.update(extra)
    return env


def nbval(folder: Path, timeout: float = TIMEOUT_S) -> subprocess.CompletedProcess:
    """``pytest --nbval-lax <folder>`` in a kernel of this environment, from outside the repository
    (so none of its pytest configuration applies)."""
    command = [sys.executable, "-m", "pytest", "--nbval-lax", "--nbval-current-env", "-p", "no:cacheprovider",
               "--nbval-cell-timeout", str(build_book.CELL_TIMEOUT_S["smoke"]), "-q", "-rf", str(folder)]
    return subprocess.run(command, cwd=folder.parent, env=student_env(), capture_output=True, text=True,
                          timeout=timeout)


def _tiny(reference: str) -> dict:
    """A notebook with the canonical head and one checked cell whose stored output is ``reference``."""
    nb = {"cells": [
        {"cell_type": "markdown", "id": "title", "metadata": {}, "source": ["# Tiny"]},
        {"cell_type": "code", "execution_count": 1, "id": "check", "metadata": {"tags": [CHECK_TAG]},
         "outputs": [{"output_type": "stream", "name": "stdout", "text": [reference]}],
         "source": ["print(profile, dataset, seed)"]},
    ], "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
        "nbformat": 4, "nbformat_minor": 5}
    return notebook_header.with_canonical_head(nb, notebook_header.repository_url())


def test_a_plain_pytest_run_collects_no_notebook():
    """Only this module runs the notebooks under nbval: the default run's paths hold no notebook."""
    import tomllib

    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    assert config["testpaths"] == ["tests"] and not list((ROOT / "tests").rglob("*.ipynb"))
    assert "nbval" not in config.get("addopts", "")


@pytest.mark.slow
def test_a_checked_output_must_match_and_the_parameters_come_from_the_environment(tmp_path):
    good, bad = tmp_path / "good" / "notebooks", tmp_path / "bad" / "notebooks"
    for folder, reference in ((good, "smoke fashion-mnist 0\n"), (bad, "quick None 0\n")):
        folder.mkdir(parents=True)
        (folder / "tiny.ipynb").write_text(notebook_header.serialise(_tiny(reference)))
    passed = nbval(good, timeout=600)
    assert passed.returncode == 0, passed.stdout[-4000:] + passed.stderr[-2000:]
    failed = nbval(bad, timeout=600)
    assert failed.returncode != 0 and "quick None 0" in failed.stdout, failed.stdout[-4000:]


@pytest.mark.slow
def test_every_notebook_runs_top_to_bottom_as_a_student_runs_it(tmp_path):
    folder = tmp_path / "notebooks"
    folder.mkdir()
    checked = 0
    for path in NOTEBOOKS:
        nb = json.loads(path.read_text(encoding="utf-8"))
        if checked_ids(nb):
            result = build_book.execute_notebook(path, RUN, PATHS, log=lambda *_: None)  # cached when unchanged
            assert result.status != "failed", result.error
            nb = with_reference_outputs(nb, json.loads((PATHS.executed(RUN) / path.name).read_text()))
            assert all(c["outputs"] for c in nb["cells"] if c.get("id") in checked_ids(nb)), \
                f"{path.name}: a cell tagged {CHECK_TAG} shows nothing in the book's run; untag it"
            checked += len(checked_ids(nb))
        (folder / path.name).write_text(notebook_header.serialise(nb), encoding="utf-8")
    assert checked >= 3, "a few setup cells must have their output checked"
    proc = nbval(folder)
    tail = proc.stdout[-8000:] + proc.stderr[-2000:]
    assert proc.returncode == 0, f"nbval failed:\n{tail}"
    assert " passed" in proc.stdout and " failed" not in proc.stdout, tail
