"""Static checks of the book's configuration, table of contents, notebooks and style."""
from __future__ import annotations

import ast
import json
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

import build_book  # noqa: E402

NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
CONFIG = yaml.safe_load((ROOT / "_config.yml").read_text())
TOC = yaml.safe_load((ROOT / "_toc.yml").read_text())


def test_execution_is_off_in_jupyter_book():
    """papermill executes the notebooks; jupyter-book only renders the executed copies."""
    assert CONFIG["execute"]["execute_notebooks"] == "off"


def test_assets_are_served_from_the_build():
    sphinx = CONFIG["sphinx"]["config"]
    assert not sphinx["mathjax_path"].startswith(("http:", "https:", "//"))
    assert all(not url.startswith(("http:", "https:", "//")) for url in sphinx["nb_ipywidgets_js"])
    assert sphinx["html_static_path"] == ["_vendor"]
    # a root folder named _static would make Jupyter Book add each of its scripts to every page
    assert not (ROOT / "_static").exists()


def test_launch_buttons_and_repository_link():
    assert CONFIG["launch_buttons"]["binderhub_url"].startswith("https://")
    assert CONFIG["launch_buttons"]["colab_url"].startswith("https://")
    assert CONFIG["html"]["use_repository_button"] is True
    assert CONFIG["repository"]["url"].startswith("https://github.com/")


def test_toc_pages_exist_or_are_optional_chapters():
    optional = {"book/transfer", "book/expansion", "book/den", "notebooks/expansion_1_pnn",
                "notebooks/expansion_2_den", "notebooks/expansion_3_families"}  # chapters not written yet; dropped until they land
    files = []

    def walk(items):
        for item in items:
            if "file" in item:
                files.append(item["file"])
            walk(item.get("sections", []))

    for part in TOC["parts"]:
        walk(part["chapters"])
    for name in files + [TOC["root"]]:
        exists = any((ROOT / f"{name}{ext}").exists() for ext in (".md", ".ipynb"))
        assert exists or name in optional, f"_toc.yml lists {name}, which does not exist"


@pytest.mark.parametrize("docs, notebooks, expect_dropped, expect_orphans", [
    ({"book/index", "book/introduction", "notebooks/intro_a"}, ["notebooks/intro_a"], {"book/ar1"}, []),
    ({"book/index", "book/introduction", "book/ar1", "notebooks/ar1_x", "notebooks/zzz"},
     ["notebooks/ar1_x", "notebooks/zzz"], set(), ["notebooks/zzz"]),
])
def test_filter_toc(docs, notebooks, expect_dropped, expect_orphans):
    toc = {"format": "jb-book", "root": "book/index", "parts": [
        {"caption": "A", "chapters": [{"file": "book/introduction", "sections": [{"glob": "notebooks/intro_*"}]}]},
        {"caption": "B", "chapters": [{"file": "book/ar1", "sections": [{"glob": "notebooks/ar1_*"}]}]},
    ]}
    new, dropped, orphans = build_book.filter_toc(toc, docs, notebooks)
    assert expect_dropped <= set(dropped)
    assert orphans == expect_orphans
    listed = json.dumps(new)
    for nb in notebooks:
        assert nb in listed or any(nb.startswith(p) for p in ("notebooks/intro_", "notebooks/ar1_"))


def test_filter_toc_promotes_notebooks_of_a_missing_chapter_page():
    toc = {"root": "book/index", "parts": [
        {"caption": "B", "chapters": [{"file": "book/ar1", "sections": [{"glob": "notebooks/ar1_*"}]}]}]}
    new, dropped, orphans = build_book.filter_toc(toc, {"book/index", "notebooks/ar1_x"}, ["notebooks/ar1_x"])
    assert new["parts"][0]["chapters"] == [{"glob": "notebooks/ar1_*"}]
    assert "book/ar1" in dropped and orphans == []


# ----------------------------------------------------------------------------- notebooks


def _code(cell) -> str:
    source = cell["source"]
    return "".join(source) if isinstance(source, list) else source


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_starts_with_the_colab_cell_then_the_parameters_cell(path, monkeypatch):
    """The head written by tools/notebook_header.py; its defaults: quick, auto, seed 0, the paper's data."""
    nb = json.loads(path.read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert len(code) >= 2, f"{path.name} has no code cell after its head"
    colab, first = code[0], code[1]
    assert "colab-install" in colab.get("metadata", {}).get("tags", []), \
        f"{path.name}: the first code cell must be the Colab cell (run tools/notebook_header.py)"
    assert "parameters" in first.get("metadata", {}).get("tags", []), \
        f"{path.name}: the second code cell must be tagged 'parameters'"
    tree = ast.parse(_code(first))
    names = [node.targets[0].id for node in tree.body if isinstance(node, ast.Assign)]
    assert names == ["profile", "device", "seed", "dataset"], \
        f"{path.name}: the parameters cell assigns the four parameters, in this order"
    for variable in ("CLUTILS_PROFILE", "CLUTILS_DEVICE", "CLUTILS_SEED", "CLUTILS_DATASET"):
        monkeypatch.delenv(variable, raising=False)
    assigned = {}
    exec(compile(tree, path.name, "exec"), {}, assigned)
    assigned.pop("os")
    assert assigned == {"profile": "quick", "device": "auto", "seed": 0, "dataset": None}, assigned


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_source_notebook_has_no_outputs(path):
    nb = json.loads(path.read_text())
    for index, cell in enumerate(nb["cells"]):
        if cell["cell_type"] == "code":
            assert not cell.get("outputs"), f"{path.name}: cell {index} has outputs (clear them before committing)"
            assert cell.get("execution_count") is None, f"{path.name}: cell {index} has an execution count"
    assert "widgets" not in nb.get("metadata", {}), f"{path.name}: saved widget state in the source"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_reads_its_settings_from_the_presets(path):
    text = "".join(_code(c) for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code")
    trains = any(word in text for word in ("fit(", "clutils.experiments", "make_benchmark(", "load_dataset("))
    if trains:  # an analytic illustration (no data, no training) has no sizes to preset
        assert "presets.get(" in text, f"{path.name}: sizes and epochs must come from clutils.presets.get"


def test_notebook_names_follow_the_chapters():
    for path in NOTEBOOKS:
        assert "_" in path.stem, f"{path.name}: name notebooks <chapter>_<what they reproduce>.ipynb"


# ----------------------------------------------------------------------------- the build's cache keys


def _nb(cells):
    return {"cells": cells, "metadata": {"kernelspec": {"name": "python3", "language": "python"}},
            "nbformat": 4, "nbformat_minor": 5}


def _cell(kind, source, tags=()):
    cell = {"cell_type": kind, "source": source, "metadata": {"tags": list(tags)}}
    if kind == "code":
        cell.update(outputs=[], execution_count=None)
    return cell


def test_cache_key_ignores_prose_but_not_code_parameters_or_clutils():
    a = _nb([_cell("markdown", "# Title"), _cell("code", "x = 1", ["parameters"]), _cell("code", "print(x)")])
    b = _nb([_cell("markdown", "# Another title"), _cell("code", "x = 1", ["parameters"]), _cell("code", "print(x)")])
    c = _nb([_cell("markdown", "# Title"), _cell("code", "x = 1", ["parameters"]), _cell("code", "print(x + 1)")])
    run = build_book.Run("quick", "auto", None, 0)
    key = build_book.notebook_key
    assert key(a, run, "h", "r") == key(b, run, "h", "r")
    assert key(a, run, "h", "r") != key(c, run, "h", "r")
    assert key(a, run, "h", "r") != key(a, build_book.Run("smoke", "auto", None, 0), "h", "r")
    assert key(a, run, "h", "r") != key(a, build_book.Run("quick", "auto", "fashion-mnist", 0), "h", "r")
    assert key(a, run, "h", "r") != key(a, run, "other clutils", "r")


def test_merge_prose_keeps_outputs_and_the_injected_parameters():
    executed = _nb([
        _cell("markdown", "old text"),
        _cell("code", "x = 1", ["parameters"]),
        _cell("code", "x = 2", ["injected-parameters"]),
        _cell("code", "print(x)"),
    ])
    executed["cells"][3]["outputs"] = [{"output_type": "stream", "name": "stdout", "text": "2\n"}]
    source = _nb([
        _cell("markdown", "new text"),
        _cell("code", "x = 1", ["parameters"]),
        _cell("markdown", "a new paragraph"),
        _cell("code", "print(x)"),
    ])
    merged = build_book.merge_prose(source, executed)
    kinds = [(c["cell_type"], c["source"]) for c in merged["cells"]]
    assert kinds == [("markdown", "new text"), ("code", "x = 1"), ("code", "x = 2"),
                     ("markdown", "a new paragraph"), ("code", "print(x)")]
    assert merged["cells"][4]["outputs"][0]["text"] == "2\n"


def test_clutils_digest_changes_with_any_package_file(tmp_path):
    (tmp_path / "clutils").mkdir()
    (tmp_path / "clutils" / "a.py").write_text("x = 1\n")
    first = build_book.clutils_digest(tmp_path)
    (tmp_path / "clutils" / "a.py").write_text("x = 2\n")
    assert build_book.clutils_digest(tmp_path) != first


# ----------------------------------------------------------------------------- style


def test_one_colour_per_strategy():
    from clutils import style

    colours = list(style.STRATEGY_COLORS.values())
    assert len(colours) == len(set(colours)), "two strategies share a colour"
    assert style.strategy_color("EWC") == style.strategy_color("ewc")
    assert style.strategy_color("fine-tuning") == style.strategy_color("naive")
    assert style.strategy_color("some-new-method") == style.strategy_color("some-new-method")
    assert set(style.strategy_palette(["si", "SI"])) == {"si", "SI"}


def test_caption_says_what_ran():
    from clutils import style

    text = style.caption("fashion-mnist", "quick", "cpu", 0)
    assert text == "Fashion-MNIST · profile quick · device cpu · seed 0"
    assert "the paper's dataset" in style.caption(None, "paper", "cuda", 1)


def test_add_caption_sits_below_the_axes():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from clutils import style

    fig, ax = plt.subplots()
    ax.set_xlabel("a label")
    style.add_caption(fig, "Run: x")
    caption = fig.texts[-1]
    renderer = fig.canvas.get_renderer()
    label_bottom = ax.xaxis.label.get_window_extent(renderer).y0
    assert caption.get_text() == "Run: x"
    assert caption.get_window_extent(renderer).y1 <= label_bottom
    plt.close(fig)


def test_the_code_the_chapters_include_is_staged_and_a_missing_file_fails_the_build(tmp_path):
    """literalinclude reads clutils from the staged tree: every target is found (and staged), none is guessed."""
    pages = sorted((ROOT / "book").rglob("*.md"))
    found = {p.relative_to(ROOT).as_posix() for p in build_book.included_files(ROOT, pages)}
    assert {"clutils/strategies/sit.py", "clutils/models_den.py"} <= found
    (tmp_path / "book").mkdir()
    page = tmp_path / "book" / "x.md"
    page.write_text("```{include} _generated/table.md\n```\n\n```{literalinclude} ../code.py\n:pyobject: f\n```\n")
    with pytest.raises(build_book.BuildError, match="includes ../code.py, which is not a file"):
        build_book.included_files(tmp_path, [page])
    (tmp_path / "code.py").write_text("def f():\n    return 1\n")
    assert build_book.included_files(tmp_path, [page]) == [(tmp_path / "code.py").resolve()]
    page.write_text("```{literalinclude} ../../outside.py\n```\n")
    (tmp_path.parent / "outside.py").write_text("x = 1\n")
    with pytest.raises(build_book.BuildError, match="not a file of the repository"):
        build_book.included_files(tmp_path, [page])
