"""The book build's notebook stage on tiny notebooks: papermill execution, the
cache that makes a prose-only re-run fast, and how a failing notebook is reported."""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

import build_book  # noqa: E402

pytestmark = pytest.mark.slow


def _write(path: Path, cells) -> None:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = cells
    nbformat.write(nb, path)


def _params():
    cell = nbformat.v4.new_code_cell('profile = "quick"\ndevice = "auto"\nseed = 0\ndataset = None')
    cell.metadata["tags"] = ["parameters"]
    return cell


@pytest.fixture
def project(tmp_path):
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "clutils").mkdir()
    (tmp_path / "clutils" / "__init__.py").write_text("")
    return build_book.Paths(tmp_path, tmp_path / "_build")


def test_execute_then_reuse_then_merge_prose_then_rerun(project):
    path = project.notebooks / "demo_cache.ipynb"
    md = nbformat.v4.new_markdown_cell("# Demo")
    _write(path, [md, _params(), nbformat.v4.new_code_cell("print(profile, dataset)")])
    run = build_book.Run("smoke", "cpu", "fashion-mnist", 0)

    first = build_book.execute_notebook(path, run, project, log=lambda *_: None)
    assert first.status == "executed", first.error
    executed = project.executed(run) / "demo_cache.ipynb"
    out = json.loads(executed.read_text())
    printed = [o for c in out["cells"] for o in c.get("outputs", []) if o.get("name") == "stdout"]
    text = printed[0]["text"] if printed else ""
    text = "".join(text) if isinstance(text, list) else text
    assert text.strip() == "smoke fashion-mnist"  # the parameters were injected
    assert json.loads(path.read_text())["cells"][2]["outputs"] == []  # the source stays clean

    start = time.perf_counter()
    again = build_book.execute_notebook(path, run, project, log=lambda *_: None)
    assert again.status == "cached" and time.perf_counter() - start < 5

    # a prose-only edit: no re-execution, the new text in the executed copy
    _write(path, [nbformat.v4.new_markdown_cell("# Demo, reworded"), _params(),
                  nbformat.v4.new_code_cell("print(profile, dataset)")])
    merged = build_book.execute_notebook(path, run, project, log=lambda *_: None)
    assert merged.status == "cached, prose merged"
    text = executed.read_text()
    assert "Demo, reworded" in text and "smoke fashion-mnist" in text

    # a code edit: executed again
    _write(path, [_params(), nbformat.v4.new_code_cell("print('changed')")])
    assert build_book.execute_notebook(path, run, project, log=lambda *_: None).status == "executed"

    # other parameters: executed into their own folder
    other = build_book.Run("quick", "cpu", "fashion-mnist", 0)
    assert build_book.execute_notebook(path, other, project, log=lambda *_: None).status == "executed"


def test_a_failing_notebook_names_itself_and_the_cell(project):
    path = project.notebooks / "demo_broken.ipynb"
    _write(path, [_params(), nbformat.v4.new_code_cell("x = 1"),
                  nbformat.v4.new_code_cell("raise ValueError('the claim broke')")])
    result = build_book.execute_notebook(path, build_book.Run("smoke", "cpu", None, 0), project,
                                         log=lambda *_: None)
    assert result.status == "failed"
    assert "notebooks/demo_broken.ipynb" in result.error
    assert "ValueError: the claim broke" in result.error
    assert "raise ValueError" in result.error  # the cell's source
    assert not (project.executed(build_book.Run("smoke", "cpu", None, 0)) / "demo_broken.key").exists()


def test_the_build_fails_on_a_core_claim_that_did_not_reproduce(project, capsys):
    path = project.notebooks / "demo_claims.ipynb"
    _write(path, [_params(), nbformat.v4.new_code_cell(
        "from clutils.scorecard import Scorecard\n"
        "card = Scorecard('Demo chapter', profile=profile, device='cpu', dataset=dataset, seed=seed)\n"
        "card.check('the effect is large', paper='Fig. 9: 0.9', measured=0.1, reproduced=False, core=True)\n"
        "card"
    )])
    code = build_book.build(build_book.Run("quick", "cpu", "fashion-mnist", 0), project, html=False,
                            log=lambda *_: None)
    err = capsys.readouterr().err
    assert code == 1
    assert "core claim not reproduced" in err and "the effect is large" in err and "demo_claims" in err
    # in the smoke profile the same claim is reported, not fatal
    assert build_book.build(build_book.Run("smoke", "cpu", "fashion-mnist", 0), project, html=False,
                            log=lambda *_: None) == 0


def test_a_hung_cell_fails_the_notebook_after_the_profiles_cell_timeout(project, monkeypatch):
    path = project.notebooks / "demo_hung.ipynb"
    _write(path, [_params(), nbformat.v4.new_code_cell("import time\ntime.sleep(60)")])
    monkeypatch.setitem(build_book.CELL_TIMEOUT_S, "smoke", 2)
    start = time.perf_counter()
    result = build_book.execute_notebook(path, build_book.Run("smoke", "cpu", None, 0), project,
                                         log=lambda *_: None)
    assert result.status == "failed" and time.perf_counter() - start < 45
    assert "notebooks/demo_hung.ipynb" in result.error and "time.sleep(60)" in result.error


def test_kernels_talk_over_unix_sockets_so_concurrent_starts_cannot_share_a_port(project):
    """With TCP, two kernels started at once could pick the same free port (seen: "Address already
    in use", and a client waiting forever on the wrong kernel); each kernel here gets its own socket."""
    path = project.notebooks / "demo_transport.ipynb"
    _write(path, [_params(), nbformat.v4.new_code_cell(
        "import json, ipykernel.connect\n"
        "info = json.loads(ipykernel.connect.get_connection_info())\n"
        "print(info['transport'], len(info['ip']) < 100)")])
    run = build_book.Run("smoke", "cpu", None, 0)
    assert build_book.execute_notebook(path, run, project, log=lambda *_: None).status == "executed"
    out = json.loads((project.executed(run) / "demo_transport.ipynb").read_text())
    printed = "".join("".join(o.get("text", "")) for c in out["cells"] for o in c.get("outputs", []))
    assert printed.strip() == "ipc True"
