"""A small Sphinx extension that makes the book's pages work offline and without console errors.

Loaded through ``sphinx.local_extensions`` in ``_config.yml``. It

* adds ``clutils-widgets.js`` to every page: it tells the ipywidgets HTML
  embed manager where its fonts are (a require.js path for its module and
  ``__jupyter_widgets_assets_path__``: the vendored copy, not a path next to
  the page) and bridges the one MathJax 2
  call the manager makes (``MathJax.Hub.Queue``) to the MathJax 3 the book
  loads;
* removes duplicated inline scripts: sphinx-thebe 0.3 adds its configuration
  script (``const THEBE_JS_URL = ...``) twice, and the second copy throws
  "Identifier 'THEBE_JS_URL' has already been declared" on every page.
"""
from __future__ import annotations

import re
from pathlib import Path

SCRIPT = "vendor/clutils/clutils-widgets.js"

JS = r"""// Written by tools/sphinx_offline.py: ipywidgets in the static book, offline.
(function () {
  "use strict";
  // The HTML manager's fonts and icons live next to embed-amd.js in _static/vendor/.
  // embed-amd.js defines the module "@jupyter-widgets/html-manager/dist/libembed-amd",
  // whose webpack public path (fonts, icons) is derived from the module's require.js
  // URL: map that module id to the vendored folder (a global `require` object is
  // read by require.js as its configuration when it loads).
  // Every other AMD module bundled in embed-amd.js ("@jupyter-widgets/html-manager",
  // controls, base, output and the widgets-7 copies base7 and controls7) derives its
  // own public path from its module URL, which require.js resolves relative to the
  // page unless mapped too: map them all into the same folder. (The html-manager
  // module's font-awesome CSS otherwise points at <page dir>/@jupyter-widgets/*.woff2.)
  var here = document.currentScript && document.currentScript.src;
  if (here) {
    var assets = new URL("../html-manager/", here).href;
    window.__jupyter_widgets_assets_path__ = assets;
    var paths = { "@jupyter-widgets/html-manager/dist": assets.replace(/\/$/, "") };
    ["html-manager", "controls", "base", "output", "controls7", "base7"].forEach(function (name) {
      paths["@jupyter-widgets/" + name] = assets + name;
    });
    if (typeof window.require === "undefined") {
      window.require = { paths: paths };
    } else if (typeof window.require.config === "function") {
      window.require.config({ paths: paths });
    }
  }
  // The HTML manager typesets widget labels with MathJax 2's MathJax.Hub.Queue;
  // the book loads MathJax 3, so bridge that call to MathJax.typesetPromise.
  function bridge() {
    var mj = window.MathJax;
    if (!mj || mj.Hub || !mj.version || String(mj.version).charAt(0) !== "3") return;
    mj.Hub = {
      Queue: function () {
        for (var i = 0; i < arguments.length; i++) {
          var job = arguments[i];
          if (!Array.isArray(job) || job[0] !== "Typeset") continue;
          var element = job[2];
          var ready = mj.startup && mj.startup.promise ? mj.startup.promise : Promise.resolve();
          ready.then(function () {
            return mj.typesetPromise ? mj.typesetPromise(element ? [element] : undefined) : null;
          }).catch(function (err) { console.warn("MathJax could not typeset a widget", err); });
        }
      },
    };
  }
  bridge();
  document.addEventListener("DOMContentLoaded", bridge);
  window.addEventListener("load", bridge);
})();
"""


def _write_script(app) -> None:
    if app.builder.format != "html":
        return
    target = Path(app.outdir) / "_static" / SCRIPT
    target.parent.mkdir(parents=True, exist_ok=True)
    if not target.exists() or target.read_text() != JS:
        target.write_text(JS)


def _dedupe_scripts(app, pagename, templatename, context, doctree) -> None:
    scripts = context.get("script_files")
    if not scripts:
        return
    seen = set()
    unique = []
    for script in scripts:
        filename = getattr(script, "filename", str(script)) or ""  # None and "" both mean inline
        body = getattr(script, "attributes", {}).get("body", "")
        key = (filename, body)
        if key in seen:
            continue
        seen.add(key)
        unique.append(script)
    scripts[:] = unique


#: A myst-nb glue role or directive that pastes from another document: {glue:text}`path::key:fmt`.
GLUE_FROM_DOC = re.compile(r"\{glue(?::[a-z]+)?\}`([^`:]+)::|```\{glue(?::[a-z]+)?\}\s+([^\s:]+)::")
#: A glue directive with the ``:doc:`` option (the form ``{glue:any}`` needs to paste a figure
#: from another document): the directive line, its other options, then ``:doc: path``.
GLUE_DOC_OPTION = re.compile(r"[`:]{3,}\{glue(?::[a-z]+)?\}[^\n]*\n(?::[A-Za-z_-]+:[^\n]*\n)*?:doc:\s*(\S+)")


def glued_documents(text: str) -> list[str]:
    """The documents (paths as written) whose glued values ``text`` pastes."""
    return sorted({a or b for a, b in GLUE_FROM_DOC.findall(text)} | set(GLUE_DOC_OPTION.findall(text)))


def _depend_on_glued_documents(app, docname, source) -> None:
    """A page that pastes a notebook's glued values is re-read when that notebook changes.

    Sphinx re-reads a page only when its own file (or a noted dependency)
    changed; without this, a chapter quoting a notebook's numbers would keep
    the numbers of the build that last read it.
    """
    for path in glued_documents(source[0]):
        _, filename = app.env.relfn2path(path, docname)
        app.env.note_dependency(filename)


def setup(app):
    app.connect("source-read", _depend_on_glued_documents)
    app.connect("builder-inited", _write_script)
    app.add_js_file(SCRIPT, priority=100)
    app.connect("html-page-context", _dedupe_scripts, priority=999)  # after every other handler
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
