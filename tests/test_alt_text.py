"""Alt text of the book's images from their captions (tools/sphinx_alt_text.py)."""
from __future__ import annotations

import sys
from pathlib import Path

from docutils import nodes
from docutils.frontend import get_default_settings
from docutils.parsers.rst import Parser
from docutils.utils import new_document

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

import sphinx_alt_text  # noqa: E402

URI = "../_images/61eb9d62e7.png"


def _document(*children: nodes.Node) -> nodes.document:
    doc = new_document("page", get_default_settings(Parser))
    section = nodes.section("", nodes.title("", "Watching a network forget"), *children)
    doc += section
    return doc


def _cell(uri: str = URI) -> nodes.container:
    output = nodes.container("", nodes.image(uri=uri, alt=uri), classes=["cell_output"])
    return nodes.container("", nodes.container("", classes=["cell_input"]), output, classes=["cell"])


def _alts(doc: nodes.document) -> list[str]:
    sphinx_alt_text.add_alt_text(None, doc, "notebooks/x")
    return [image["alt"] for image in doc.findall(nodes.image)]


def test_a_caption_under_the_cell_becomes_the_alt_text():
    caption = nodes.paragraph("", "Figure 2: accuracy on task 1 after each task, naive fine-tuning.")
    assert _alts(_document(_cell(), caption)) == ["Figure 2: accuracy on task 1 after each task, naive fine-tuning."]


def test_a_figures_caption_becomes_the_alt_text():
    figure = nodes.figure("", nodes.image(uri=URI), nodes.caption("", "Average accuracy over tasks (glued)."))
    assert _alts(_document(figure)) == ["Average accuracy over tasks (glued)."]


def test_without_a_caption_the_alt_text_says_where_the_figure_is():
    text = nodes.paragraph("", "The next cell trains the network.")  # not a caption
    sub = nodes.section("", nodes.title("", "Three scenarios"), _cell())
    assert _alts(_document(_cell(), text, sub)) == [
        "Figure 1 of Watching a network forget", "Figure 2 of Watching a network forget: Three scenarios"]


def test_a_written_alt_text_is_kept_and_a_long_caption_shortened():
    kept = nodes.image(uri=URI, alt="Binder logo")
    long = nodes.paragraph("", "Figure 1: " + "word " * 200)
    alts = _alts(_document(nodes.paragraph("", "", kept), _cell(), long))
    assert alts[0] == "Binder logo"
    assert alts[1].startswith("Figure 1: word") and len(alts[1]) <= sphinx_alt_text.MAX_CHARS
    assert alts[1].endswith("…")


def test_file_names_are_not_alt_text():
    assert sphinx_alt_text.needs_alt(nodes.image(uri="a.png", alt="_images/abc123.png"))
    assert sphinx_alt_text.needs_alt(nodes.image(uri="a.png"))
    assert not sphinx_alt_text.needs_alt(nodes.image(uri="a.png", alt="Accuracy after each task"))


def test_a_caption_paragraph_may_say_caption():
    caption = nodes.paragraph("", "Caption: the confusion matrix after each batch.")
    assert _alts(_document(_cell(), caption)) == ["Caption: the confusion matrix after each batch."]
