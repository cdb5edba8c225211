"""A small Sphinx extension: every image of the book gets alt text from its caption.

Loaded through ``sphinx.local_extensions`` in ``_config.yml``. myst-nb writes a notebook's
figure as an image whose alt text is its file name (``../_images/61eb9d...png``), which a
screen reader reads out as a hash. When a page is resolved, each image whose alt text is
missing or a file name gets, in this order:

1. the caption of the figure it belongs to (a ``{glue:figure}`` or ``{figure}`` with a caption);
2. the caption written under the notebook cell that drew it: the first paragraph after the
   cell, when it starts with "Figure", "Fig." or "Caption" (the book's captions are text on
   the page);
3. otherwise a description of where it is: "Figure k of <page title>: <section title>",
   so that no image is left without alt text.

Alt text is plain text, shortened to :data:`MAX_CHARS` characters.
"""
from __future__ import annotations

import re

from docutils import nodes

MAX_CHARS = 300
#: A paragraph that is a figure's caption ("Figure 3.", "**Figure:** ...", "Fig. 2 ...", "*Caption:* ...").
CAPTION = re.compile(r"^\s*(figure|fig\.|caption)", re.IGNORECASE)
#: Alt text that is only a file name or path (myst-nb's default), to be replaced.
FILE_NAME = re.compile(r"^[\w./\\-]+\.(png|jpe?g|gif|svg|webp)$", re.IGNORECASE)


def shorten(text: str, limit: int = MAX_CHARS) -> str:
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    cut = text[: limit - 1].rsplit(" ", 1)[0]
    return cut.rstrip(" ,;:") + "…"


def needs_alt(image: nodes.image) -> bool:
    alt = str(image.get("alt", "") or "").strip()
    return not alt or alt == image.get("uri") or bool(FILE_NAME.match(alt))


def _figure_caption(image: nodes.image) -> str:
    parent = image.parent
    while parent is not None and not isinstance(parent, nodes.figure):
        parent = parent.parent
    if parent is None:
        return ""
    for child in parent.children:
        if isinstance(child, nodes.caption):
            return child.astext()
    return ""


def _cell_of(image: nodes.image) -> nodes.Element | None:
    """The notebook cell (myst-nb: a container with class ``cell``) that holds ``image``."""
    node = image.parent
    while node is not None:
        if isinstance(node, nodes.container) and "cell" in node.get("classes", []):
            return node
        node = node.parent
    return None


def _caption_after(cell: nodes.Element) -> str:
    """The first paragraph after ``cell`` when it reads as a caption ("Figure ...")."""
    parent = cell.parent
    if parent is None:
        return ""
    index = parent.index(cell)
    for sibling in parent.children[index + 1:]:
        if isinstance(sibling, nodes.paragraph):
            text = sibling.astext()
            return text if CAPTION.match(text) else ""
        if isinstance(sibling, (nodes.section, nodes.container)) or isinstance(sibling, nodes.title):
            return ""  # the next cell or section: no caption
    return ""


def _where(image: nodes.image, page_title: str, number: int) -> str:
    section = image.parent
    while section is not None and not isinstance(section, nodes.section):
        section = section.parent
    title = ""
    if section is not None:
        heading = next((c for c in section.children if isinstance(c, nodes.title)), None)
        title = heading.astext() if heading is not None else ""
    where = page_title if not title or title == page_title else f"{page_title}: {title}"
    return f"Figure {number} of {where}" if where else f"Figure {number}"


def alt_text(image: nodes.image, page_title: str, number: int) -> str:
    """The alt text of ``image`` (see the module docstring for the order of the sources)."""
    caption = _figure_caption(image)
    if not caption:
        cell = _cell_of(image)
        caption = _caption_after(cell) if cell is not None else ""
    return shorten(caption or _where(image, page_title, number))


def _page_title(doctree: nodes.document) -> str:
    heading = next(iter(doctree.findall(nodes.title)), None)
    return heading.astext() if heading is not None else ""


def add_alt_text(app, doctree: nodes.document, docname: str) -> None:
    title = _page_title(doctree)
    for number, image in enumerate(doctree.findall(nodes.image), start=1):
        if needs_alt(image):
            image["alt"] = alt_text(image, title, number)


def setup(app):
    app.connect("doctree-resolved", add_alt_text)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
