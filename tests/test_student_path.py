"""The student's path: a notebook opened in Jupyter and run with its defaults, no papermill.

* On a machine without the paper's dataset, the first data load stops with an error that says
  which line of the parameters cell to change (``dataset = "fashion-mnist"``), besides the
  command-line hint.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from clutils.data import datasets

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

import build_book  # noqa: E402
import notebook_header  # noqa: E402


def test_the_missing_data_error_names_the_line_of_the_parameters_cell(tmp_path):
    message = str(datasets.unavailable("mnist", tmp_path, str(tmp_path / "MNIST")))
    assert notebook_header.DATASET_LINE in message
    assert 'dataset = "fashion-mnist"' in message
    assert "make book DATASET=fashion-mnist" in message and "--dataset fashion-mnist" in message
    # when Fashion-MNIST itself is missing, the hint proposes a dataset that needs no file
    message = str(datasets.unavailable("fashion-mnist", tmp_path, str(tmp_path)))
    assert 'dataset = "digits"' in message and 'dataset = "fashion-mnist"' not in message


def test_the_error_quotes_the_line_the_notebooks_have():
    assert datasets.NOTEBOOK_DATASET_LINE == notebook_header.DATASET_LINE
    for path in notebook_header.notebooks(ROOT):
        params = [c for c in json.loads(path.read_text())["cells"]
                  if "parameters" in c["metadata"].get("tags", [])][0]
        assert notebook_header.DATASET_LINE in "".join(params["source"]), path.name


@pytest.fixture
def no_data_anywhere(tmp_path, monkeypatch):
    """A kernel's environment without any dataset and without a network (pip and downloads fail fast)."""
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("CLUTILS_DATA", str(tmp_path / "data-root"))
    monkeypatch.setenv(datasets.DEBIAN_ENV_VAR, str(empty))
    monkeypatch.setenv("PIP_CONFIG_FILE", "/dev/null")  # no index, no local wheels: pip fails at once
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(empty))
    for proxy in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        monkeypatch.setenv(proxy, "http://127.0.0.1:9")  # nothing listens there: refused at once
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.setenv("CLUTILS_PROFILE", "smoke")
    monkeypatch.delenv("CLUTILS_DATASET", raising=False)
    monkeypatch.delenv("CLUTILS_SCORECARD_DIR", raising=False)
    monkeypatch.setenv("JUPYTER_PATH", str(build_book._kernel_env(build_book.Paths(ROOT, tmp_path / "_build"))))
    monkeypatch.setenv("MPLBACKEND", "agg")
    return tmp_path


@pytest.mark.slow
def test_a_notebook_run_with_its_defaults_without_the_data_says_which_line_to_change(no_data_anywhere):
    import nbclient
    import nbformat

    path = ROOT / "notebooks" / "intro_forgetting.ipynb"
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(nb, kernel_name="python3", timeout=300, startup_timeout=120,
                                     resources={"metadata": {"path": str(path.parent)}},
                                     kernel_manager_class=build_book.kernel_manager_class())
    with pytest.raises(nbclient.exceptions.CellExecutionError) as caught:
        client.execute()
    text = build_book.ANSI.sub("", str(caught.value))
    assert "DatasetUnavailableError" in text and "'mnist' is not available" in text
    assert notebook_header.DATASET_LINE in text and 'dataset = "fashion-mnist"' in text
    assert "make book DATASET=fashion-mnist" in text
