"""The book build with several notebooks at once (``make book JOBS=N``), on tiny notebooks:
the same claims and figures as one at a time, failures kept per notebook, each worker's
share of the machine, the cache under the pool, and the CI's gathering of executed copies."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

import build_book  # noqa: E402

RUN = build_book.Run("quick", "cpu", "fashion-mnist", 0)

pytestmark = pytest.mark.slow


def _write(path: Path, *sources: str) -> None:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    params = nbformat.v4.new_code_cell('profile = "quick"\ndevice = "auto"\nseed = 0\ndataset = None')
    params.metadata["tags"] = ["parameters"]
    nb.cells = [nbformat.v4.new_markdown_cell(f"# {path.stem}"), params]
    nb.cells += [nbformat.v4.new_code_cell(source) for source in sources]
    nbformat.write(nb, path)


# A notebook that records when it ran and with what threads, draws a figure and checks a claim
# computed from its name (so every notebook's claim differs).
TIMED = '''import os, time
started = time.time()
time.sleep({sleep})
print(json.dumps({{"start": started, "end": time.time(), "omp": os.environ.get("OMP_NUM_THREADS")}}))'''
CLAIM = '''import matplotlib
matplotlib.use("module://matplotlib_inline.backend_inline")
import matplotlib.pyplot as plt
from clutils.scorecard import Scorecard
value = sum(map(ord, "{name}")) % 97 / 97
fig, ax = plt.subplots(figsize=(2, 2))
ax.plot([0, 1], [0, value])
plt.show()
card = Scorecard("Demo", profile=profile, device="cpu", dataset=dataset, seed=seed)
card.check("{name} holds", paper="0.5", measured=value, reproduced=value > 0, core=True)'''


def _demo(notebooks: Path, name: str, sleep: float = 0.0) -> Path:
    path = notebooks / f"{name}.ipynb"
    _write(path, "import json", TIMED.format(sleep=sleep), CLAIM.format(name=name))
    return path


@pytest.fixture
def project(tmp_path):
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "clutils").mkdir()
    (tmp_path / "clutils" / "__init__.py").write_text("")
    return tmp_path


def _paths(project: Path, build: str) -> build_book.Paths:
    return build_book.Paths(project, project / build)


def _claims(paths: build_book.Paths) -> list[dict]:
    folder = paths.executed(RUN) / "claims"
    return [claim for f in sorted(folder.glob("*.json")) for claim in json.loads(f.read_text())["claims"]]


def _outputs(paths: build_book.Paths, name: str, kind: str) -> list[str]:
    nb = json.loads((paths.executed(RUN) / f"{name}.ipynb").read_text())
    found = []
    for cell in nb["cells"]:
        for out in cell.get("outputs", []):
            if kind == "stdout" and out.get("name") == "stdout":
                found.append("".join(out["text"]))
            elif kind in out.get("data", {}):
                found.append("".join(out["data"][kind]))
    return found


def test_jobs_2_gives_the_same_claims_and_figures_as_jobs_1_and_runs_notebooks_at_once(project, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "7")  # the workers' share replaces what the parent has
    names = ["demo_a", "demo_b", "demo_c"]
    for name in names:
        _demo(project / "notebooks", name, sleep=2)
    one, two = _paths(project, "_build_1"), _paths(project, "_build_2")
    assert build_book.build(RUN, one, html=False, jobs=1, log=lambda *_: None) == 0
    assert build_book.build(RUN, two, html=False, jobs=2, log=lambda *_: None) == 0

    assert _claims(one) == _claims(two) and len(_claims(two)) == 3
    for name in names:
        assert _outputs(one, name, "image/png") == _outputs(two, name, "image/png") != []
    runs = {name: json.loads(_outputs(two, name, "stdout")[0]) for name in names}
    # two notebooks ran at the same time
    a, b = runs["demo_a"], runs["demo_b"]
    assert max(a["start"], b["start"]) < min(a["end"], b["end"])
    # every kernel, one at a time or two, on the quick profile's one thread: the thread count
    # changes float sums' order, so JOBS must not change it
    alone = {name: json.loads(_outputs(one, name, "stdout")[0]) for name in names}
    assert {r["omp"] for r in [*runs.values(), *alone.values()]} == {"1"}


def test_a_failing_notebook_under_jobs_2_fails_the_build_with_its_name_while_the_others_complete(
        project, capsys):
    for name in ("demo_a", "demo_c"):
        _demo(project / "notebooks", name)
    _write(project / "notebooks" / "demo_b.ipynb", "x = 1", "raise RuntimeError('demo_b broke')")
    paths = _paths(project, "_build")
    lines = []
    assert build_book.build(RUN, paths, html=False, jobs=2, log=lines.append) == 1
    err = capsys.readouterr().err
    assert "notebooks/demo_b.ipynb" in err and "RuntimeError: demo_b broke" in err
    assert "demo_a" not in err and "demo_c" not in err
    out = paths.executed(RUN)
    assert (out / "demo_a.ipynb").exists() and (out / "demo_c.ipynb").exists()
    assert (out / "demo_b.failed.ipynb").exists() and not (out / "demo_b.ipynb").exists()
    assert sorted(c["notebook"] for c in _claims(paths)) == ["demo_a", "demo_c"]
    # the progress display named the running notebooks
    assert any("running:" in line and "demo_" in line for line in lines)


def test_the_pool_reuses_cached_notebooks_and_re_executes_on_a_change_to_clutils(project):
    for name in ("demo_a", "demo_b"):
        _demo(project / "notebooks", name)
    paths = _paths(project, "_build")
    sources = build_book.notebook_sources(paths)

    def statuses():
        return [r.status for r in build_book.execute_notebooks(
            sources, RUN, paths, jobs=2, gpus=[], cores=2, log=lambda *_: None)]

    assert statuses() == ["executed", "executed"]
    assert statuses() == ["cached", "cached"]
    _demo(project / "notebooks", "demo_b", sleep=0.1)  # code change of one notebook
    assert statuses() == ["cached", "executed"]
    (project / "clutils" / "helpers.py").write_text("SCALE = 2\n")
    assert statuses() == ["executed", "executed"]


def test_each_worker_gets_its_own_gpu_or_its_share_of_the_cores():
    quick, paper = build_book.Run("quick", "auto"), build_book.Run("paper", "auto")
    assert build_book.default_jobs(quick, gpus=["0", "1", "2"], cores=16) == 3
    assert build_book.default_jobs(quick, gpus=[], cores=2) == 2  # one thread per notebook
    assert build_book.default_jobs(paper, gpus=[], cores=8) == 1  # a paper-scale notebook takes all cores
    assert build_book.worker_envs(1, [], 8) == [{}]  # paper profile on the CPU: the machine's defaults
    assert build_book.worker_envs(1, [], 8, threads=1) == [{"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}]
    assert build_book.worker_envs(2, [], 2) == [{"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}] * 2
    envs = build_book.worker_envs(2, ["4", "6"], 16)
    assert [e["CUDA_VISIBLE_DEVICES"] for e in envs] == ["4", "6"]
    assert {e["OMP_NUM_THREADS"] for e in envs} == {"8"}


def test_bad_jobs_values_are_refused():
    assert build_book._jobs("") is None and build_book._jobs("0") is None and build_book._jobs("3") == 3
    for bad in ("-1", "two", "1.5"):
        with pytest.raises(Exception, match="JOBS must be a whole number"):
            build_book._jobs(bad)


def test_gathering_builds_from_executed_copies_and_names_the_missing_and_the_stale(project, capsys, monkeypatch):
    for name in ("demo_a", "demo_b", "demo_c"):
        _demo(project / "notebooks", name)
    paths = _paths(project, "_build")
    assert build_book.build(RUN, paths, html=False, only=["demo_a", "demo_b"], jobs=1,
                            log=lambda *_: None) == 0
    _write(project / "notebooks" / "demo_b.ipynb", "print('edited after its job ran')")
    sources = build_book.notebook_sources(paths)
    results = build_book.gather_executed(sources, RUN, paths, log=lambda *_: None)
    assert [r.status for r in results] == ["gathered", "failed", "failed"]
    assert "ran other code than the source" in results[1].error
    assert "notebooks/demo_c.ipynb has no executed copy" in results[2].error
    assert "execute (demo_c)" in results[2].error
    # the build from executed copies fails on them, naming them (in the CI's summary too),
    # and executes nothing
    summary = project / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    assert build_book.build(RUN, paths, html=False, from_executed=True, log=lambda *_: None) == 1
    err = capsys.readouterr().err
    assert "demo_b" in err and "demo_c" in err
    assert "FAILED" in summary.read_text() and "notebooks/demo_c.ipynb has no executed copy" in summary.read_text()
    assert not (paths.executed(RUN) / "demo_c.ipynb").exists()


def test_only_a_name_that_matches_nothing_is_an_error(project, capsys):
    _demo(project / "notebooks", "demo_a")
    assert build_book.build(RUN, _paths(project, "_build"), html=False, only=["nope"],
                            log=lambda *_: None) == 1
    assert "no notebook under" in capsys.readouterr().err


def test_a_killed_worker_fails_the_build_with_a_message_not_a_crash(project, capsys):
    # the kernel kills the pool worker that started it, as the kernel OOM killer would
    _write(project / "notebooks" / "demo_a.ipynb", "import os, signal, time\nos.kill(os.getppid(), signal.SIGKILL)\ntime.sleep(30)")
    for name in ("demo_b", "demo_c"):
        _demo(project / "notebooks", name)
    assert build_book.build(RUN, _paths(project, "_build"), html=False, jobs=2, log=lambda *_: None) == 1
    err = capsys.readouterr().err
    assert "notebooks/demo_a.ipynb" in err and "process" in err


def test_the_pool_starts_the_notebooks_that_took_longest_last_time_first(project):
    for name, sleep in (("demo_a", 0.0), ("demo_b", 3.0), ("demo_c", 0.0)):
        _demo(project / "notebooks", name, sleep=sleep)
    paths = _paths(project, "_build")
    sources = build_book.notebook_sources(paths)
    assert build_book.longest_first(sources, RUN, paths) == sources  # nothing known: the source order
    build_book.execute_notebooks(sources, RUN, paths, jobs=2, gpus=[], cores=2, log=lambda *_: None)
    (project / "notebooks" / "demo_d.ipynb").write_bytes((project / "notebooks" / "demo_a.ipynb").read_bytes())
    order = [p.stem for p in build_book.longest_first(build_book.notebook_sources(paths), RUN, paths)]
    assert order[:2] == ["demo_d", "demo_b"]  # never executed, then the slowest
    lines = []
    build_book.execute_notebooks(build_book.notebook_sources(paths), RUN, paths, jobs=2, gpus=[], cores=2,
                                 force=True, log=lines.append)
    started = [line.split(":")[0].strip() for line in lines if line.endswith("thread(s))") and "started" in line]
    assert started[:2] == ["demo_d", "demo_b"]  # the pool follows that order
