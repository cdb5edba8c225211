"""Numbers in the chapters' prose come from the build: myst-nb ``glue`` from the notebooks.

A page pastes a notebook's value with ``{glue:text}`../notebooks/<nb>.ipynb::<key>:<format>```;
the book's Sphinx extension (``tools/sphinx_offline.py``) makes the page depend on that
notebook, so an incremental build re-reads the page when the notebook's values change.
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

import sphinx_offline  # noqa: E402

#: A glue reference to another document: the notebook path and the key.
REFERENCE = re.compile(r"\{glue(?::[a-z]+)?\}`([^`:]+)::([A-Za-z0-9_]+)")
#: A glue directive pasting from another document (a figure): the key, then the ``:doc:`` path.
DOC_REFERENCE = re.compile(r"```\{glue(?::[a-z]+)?\}\s+([A-Za-z0-9_]+)\n:doc:\s*(\S+)")


def test_glued_documents_finds_roles_and_directives():
    text = ("A {glue:text}`../notebooks/a.ipynb::x:.1f` and {glue}`b.ipynb::y`, a local {glue:text}`z:.2f`,\n"
            "```{glue:figure} ../notebooks/c.ipynb::fig\n```\n")
    assert sphinx_offline.glued_documents(text) == ["../notebooks/a.ipynb", "../notebooks/c.ipynb", "b.ipynb"]
    # a figure from another document: {glue:any} with the :doc: option (glue:figure reads its own page only)
    figure = "```{glue:any} fig\n:doc: ../notebooks/d.ipynb\n```\n"
    assert sphinx_offline.glued_documents(text + figure) == [
        "../notebooks/a.ipynb", "../notebooks/c.ipynb", "../notebooks/d.ipynb", "b.ipynb"]


def _glued_keys(notebook: Path) -> set[str]:
    keys = set()
    for cell in json.loads(notebook.read_text())["cells"]:
        if cell["cell_type"] == "code":
            keys |= set(re.findall(r'\bglue\(\s*"([^"]+)"', "".join(cell["source"])))
    return keys


def test_every_glued_number_in_the_chapters_comes_from_a_notebook_that_glues_it():
    pages = sorted((ROOT / "book").glob("*.md"))
    references = {page.name: REFERENCE.findall(page.read_text())
                  + [(path, key) for key, path in DOC_REFERENCE.findall(page.read_text())] for page in pages}
    for page, refs in references.items():
        for path, key in refs:
            notebook = (ROOT / "book" / path).resolve()
            assert notebook.exists(), f"{page} pastes from {path}, which does not exist"
            assert key in _glued_keys(notebook), f"{page} pastes {key!r}, which {notebook.name} does not glue"
    # the ALASSO chapter's measured margins and the probe's counts are glued, not typed in
    alasso = {Path(path).stem for path, _ in references["alasso.md"]}
    assert alasso == {"alasso_2_loss_asymmetry", "alasso_3_permuted_mnist"}
    text = (ROOT / "book" / "alasso.md").read_text()
    assert "8 to 12 points" not in text and "76 s" not in text


def test_every_pasted_text_names_its_format():
    """myst-nb splits ``path::key:format`` at the last colon: without a format, or with a brace for
    the closing backtick, the page shows a warning instead of the number."""
    for page in sorted((ROOT / "book").glob("*.md")):
        for role in re.findall(r"\{glue:text\}`([^`]*)`", page.read_text()):
            if "::" not in role:
                continue
            assert re.fullmatch(r"[^`:]+::[A-Za-z0-9_]+:[^:{}\s]+", role), f"{page.name}: {{glue:text}}`{role}`"


def test_each_chapter_page_shows_its_key_figure_from_the_build():
    """introduction.md and alasso.md paste a figure glued by an executed notebook, not a committed PNG."""
    for page, notebook in (("introduction.md", "intro_forgetting"), ("alasso.md", "alasso_3_permuted_mnist")):
        text = (ROOT / "book" / page).read_text()
        figures = [(key, Path(path).stem) for key, path in DOC_REFERENCE.findall(text)]
        assert any(stem == notebook for _, stem in figures), f"{page} pastes no figure from {notebook}"
        assert ".png" not in text, f"{page} shows a committed image"


def _glue_notebook(path: Path, value: float) -> None:
    from nbclient import NotebookClient

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_markdown_cell("# Numbers"),
                nbformat.v4.new_code_cell(f"from myst_nb import glue\nglue('margin', {value}, display=False)")]
    NotebookClient(nb, kernel_name="python3").execute()
    nbformat.write(nb, path)


def _build(src: Path, out: Path) -> str:
    jb = Path(sys.executable).with_name("jupyter-book")
    subprocess.run([str(jb), "build", str(src), "--path-output", str(out)], check=True, capture_output=True)
    html = (out / "_build" / "html" / "book" / "page.html").read_text()
    return re.search(r'margin was <span class="pasted-text">([^<]*)</span>', html).group(1)


@pytest.mark.slow
def test_a_page_shows_the_new_value_after_its_notebook_changes(tmp_path):
    src, out = tmp_path / "src", tmp_path / "out"
    for folder in ("book", "notebooks", "tools"):
        (src / folder).mkdir(parents=True)
    (src / "tools" / "sphinx_offline.py").write_text((ROOT / "tools" / "sphinx_offline.py").read_text())
    (src / "_config.yml").write_text(
        'title: t\nexecute:\n  execute_notebooks: "off"\nonly_build_toc_files: true\n'
        "sphinx:\n  local_extensions:\n    sphinx_offline: tools/\n")
    # The page is not the notebook's parent in the table of contents (a parent is rewritten anyway).
    (src / "_toc.yml").write_text("format: jb-book\nroot: book/intro\nchapters:\n"
                                  "  - file: book/page\n  - file: notebooks/numbers\n")
    (src / "book" / "intro.md").write_text("# Intro\n")
    (src / "book" / "page.md").write_text(
        "# Page\n\nThe margin was {glue:text}`../notebooks/numbers.ipynb::margin:.1f` points.\n")
    _glue_notebook(src / "notebooks" / "numbers.ipynb", 1.234)
    assert _build(src, out) == "1.2"
    time.sleep(0.05)
    _glue_notebook(src / "notebooks" / "numbers.ipynb", 5.678)  # the notebook ran again; the page did not change
    assert _build(src, out) == "5.7"
