"""The rendered book, opened page by page in headless Chromium with no network.

One smoke-profile build of the whole book (``tools/build_book.py``, a
session-scoped fixture) is served from ``_build/html`` on 127.0.0.1; every page
is opened once in Debian's Chromium driven by Playwright (``executable_path``:
Playwright's own browser download is never used). Every request that leaves
127.0.0.1 is blocked and recorded, so the checks below prove the pages render
offline. A full-page screenshot of each page is saved under
``_build/screenshots/`` (CI keeps them as an artifact).
"""
from __future__ import annotations

import functools
import html.parser
import http.server
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import unquote, urljoin, urlparse

import pytest

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / "_build"
HTML = BUILD / "html"
SCREENSHOTS = BUILD / "screenshots"
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}

pytestmark = [pytest.mark.browser, pytest.mark.slow]

#: Console messages that are harmless, each with the reason. Everything else
#: logged as a console error, and every uncaught exception, fails the test.
ALLOWED_CONSOLE_ERRORS = [
    # Chromium logs every request our route handler aborts; those requests are
    # checked separately (test_no_request_leaves_the_machine), with their URLs.
    re.compile(r"Failed to load resource: net::ERR_FAILED"),
    re.compile(r"Failed to load resource: net::ERR_BLOCKED_BY_CLIENT"),
]

#: Pages that are Sphinx's own machinery, not content.
SKIP_PAGES = {"genindex.html", "search.html", "py-modindex.html"}


def _chromium() -> str | None:
    for candidate in (os.environ.get("CHROMIUM"), "chromium", "chromium-browser", "/usr/bin/chromium"):
        if candidate and shutil.which(candidate):
            return shutil.which(candidate)
    return None


def _need(condition: bool, reason: str) -> None:
    """Skip on a developer's machine without the tool; fail in CI, where .ci/run installs it."""
    if not condition:
        if IN_CI:
            pytest.fail(reason + " (CI installs it: see .ci/run)")
        pytest.skip(reason)


# ----------------------------------------------------------------------------- the build


@pytest.fixture(scope="session")
def smoke_book() -> Path:
    """Build the whole book in the smoke profile (the notebooks' executed copies are cached)."""
    return build_smoke_book()


@functools.lru_cache(maxsize=None)
def build_smoke_book() -> Path:
    """The build behind :func:`smoke_book`, run once per session by every module that imports the fixture.

    ``BOOK_TEST_ONLY`` (globs separated by spaces, a developer's short loop) builds only
    those notebooks: the checks that expect every notebook's page (and the links to the
    pages left out) then fail, by design; the widget tests need only their three notebooks.
    """
    dataset = os.environ.get("BOOK_TEST_DATASET", "fashion-mnist")
    command = [sys.executable, str(ROOT / "tools" / "build_book.py"), "--profile", "smoke",
               "--device", os.environ.get("BOOK_TEST_DEVICE", "auto"), "--dataset", dataset]
    if os.environ.get("BOOK_TEST_ONLY", "").split():
        command += ["--only", *os.environ["BOOK_TEST_ONLY"].split()]
    start = time.perf_counter()
    proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    output = proc.stdout + proc.stderr
    (BUILD / "logs").mkdir(parents=True, exist_ok=True)
    (BUILD / "logs" / "smoke-build.log").write_text(output)
    if proc.returncode != 0:
        pytest.fail(f"the smoke build of the book failed after {seconds:.0f} s:\n{output[-6000:]}")
    print(f"\nsmoke book built in {seconds:.1f} s")
    return HTML


def _is_redirect(path: Path) -> bool:
    head = path.read_text(errors="replace")[:2000].lower()
    return 'http-equiv="refresh"' in head and "<main" not in head


def _pages(html_root: Path) -> list[Path]:
    pages = []
    for path in sorted(html_root.rglob("*.html")):
        rel = path.relative_to(html_root)
        if rel.parts[0].startswith("_") or rel.name in SKIP_PAGES:
            continue
        if _is_redirect(path):
            continue  # Jupyter Book's root index.html only redirects to the landing page
        pages.append(path)
    return pages


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - the base class's name
        pass


@pytest.fixture(scope="session")
def server(smoke_book: Path):
    handler = functools.partial(_QuietHandler, directory=str(smoke_book))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()
    httpd.server_close()


# ----------------------------------------------------------------------------- one visit per page

PAGE_STATE_JS = r"""
async () => {
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) {
    await MathJax.startup.promise;
  }
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  // widgets render asynchronously once require.js has loaded the embed manager
  const views = document.querySelectorAll('script[type="application/vnd.jupyter.widget-view+json"]');
  for (let i = 0; i < 100 && views.length; i++) {
    const rendered = document.querySelectorAll('.jupyter-widgets, .widget-tab, .lm-TabBar').length;
    if (rendered >= views.length) break;
    await sleep(100);
  }
  // images (including those the widgets create) finish decoding
  for (let i = 0; i < 50; i++) {
    if ([...document.images].every((img) => img.complete)) break;
    await sleep(100);
  }
  // every font the page's CSS declares (widget icons included), fetched whether or not a glyph
  // happens to be drawn: a wrong public path shows up on every run, not only on some
  const fontUrls = new Set();
  for (const sheet of document.styleSheets) {
    let rules;
    try { rules = sheet.cssRules; } catch (e) { continue; }
    for (const rule of rules) {
      if (rule.type !== CSSRule.FONT_FACE_RULE) continue;
      for (const m of rule.style.getPropertyValue('src').matchAll(/url\(\s*["']?([^"')]+)["']?\s*\)/g)) {
        if (!m[1].startsWith('data:')) fontUrls.add(new URL(m[1], sheet.href || document.baseURI).href);
      }
    }
  }
  const fonts = [];
  for (const url of fontUrls) {
    const response = await fetch(url).catch(() => null);
    fonts.push({url: url, status: response ? response.status : null});
  }
  const main = document.querySelector('main') || document.body;
  const clone = main.cloneNode(true);
  clone.querySelectorAll('pre, code, script, style, textarea').forEach((n) => n.remove());
  const text = clone.innerText || clone.textContent;
  const images = [...document.images].map((img) => ({
    src: img.currentSrc || img.src, complete: img.complete, width: img.naturalWidth,
  }));
  return {
    title: document.title,
    rawTex: ['\\(', '\\)', '\\[', '\\]', '$$'].filter((s) => text.includes(s)),
    mathNodes: document.querySelectorAll('.math').length,
    typeset: document.querySelectorAll('mjx-container').length,
    images: images,
    outputImages: document.querySelectorAll('.cell_output img, .output img').length,
    widgetViews: views.length,
    widgetsRendered: document.querySelectorAll('.jupyter-widgets').length,
    widgetErrors: document.querySelectorAll('.jupyter-widgets-error-widget, .widget-error').length,
    links: [...document.querySelectorAll('a[href]')].map((a) => a.getAttribute('href')),
    fonts: fonts,
    text: text.slice(0, 20000),
  };
}
"""


def playwright_or_skip():
    """Playwright's ``sync_playwright``, after checking that Debian's Chromium is there (skip, or fail in CI)."""
    _need(_chromium() is not None, "Debian's chromium is not installed")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _need(False, "the Python package playwright is not installed (pip install -e '.[test]')")
    return sync_playwright


def launch_chromium(p):
    """Debian's headless Chromium through Playwright ``p`` (Playwright's own browser download is never used)."""
    return p.chromium.launch(
        executable_path=_chromium(),
        args=["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
              "--disable-background-networking", "--disable-component-update", "--disable-sync"],
    )


def open_offline(context, server: str):
    """A new page of ``context`` whose requests off ``server`` are blocked; returns (page, record).

    ``record`` collects uncaught errors, console errors, blocked external URLs and
    failed local requests, as the page runs.
    """
    host = urlparse(server).netloc
    record: dict = {"errors": [], "console": [], "external": [], "failed": []}
    page = context.new_page()

    def route(r):
        if urlparse(r.request.url).netloc == host or r.request.url.startswith(("data:", "blob:")):
            r.continue_()
        else:
            record["external"].append(r.request.url)
            r.abort()

    page.route("**/*", route)
    page.on("pageerror", lambda err: record["errors"].append(str(err)))
    page.on("console", lambda msg: record["console"].append(msg.text) if msg.type == "error" else None)
    page.on("requestfailed", lambda req: record["failed"].append(
        f"{req.url} ({req.failure})") if urlparse(req.url).netloc == host else None)
    return page, record


@pytest.fixture(scope="session")
def visits(server: str, smoke_book: Path) -> dict[str, dict]:
    """Open every page once; return what each one showed, keyed by its path."""
    sync_playwright = playwright_or_skip()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for old in SCREENSHOTS.glob("*.png"):
        old.unlink()
    results: dict[str, dict] = {}
    with sync_playwright() as p:
        browser = launch_chromium(p)
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        for path in _pages(smoke_book):
            rel = path.relative_to(smoke_book).as_posix()
            page, record = open_offline(context, server)
            response = page.goto(server + rel, wait_until="load")
            record["status"] = response.status if response else None
            record.update(page.evaluate(PAGE_STATE_JS))
            shot = SCREENSHOTS / (rel.replace("/", "__").removesuffix(".html") + ".png")
            page.screenshot(path=str(shot), full_page=True)
            record["screenshot"] = shot
            results[rel] = record
            page.close()
        browser.close()
    return results


def _problems(visits: dict[str, dict], check) -> list[str]:
    out = []
    for rel, record in visits.items():
        for problem in check(rel, record):
            out.append(f"{rel}: {problem}")
    return out


# ----------------------------------------------------------------------------- the checks


def test_book_has_the_expected_pages(visits):
    pages = set(visits)
    for expected in ("book/index.html", "book/running.html", "book/introduction.html",
                     "book/scorecard.html", "book/references.html", "notebooks/intro_forgetting.html"):
        assert expected in pages, f"{expected} missing from the built book: {sorted(pages)}"
    notebooks = sorted(p.stem for p in (ROOT / "notebooks").glob("*.ipynb"))
    for name in notebooks:
        assert f"notebooks/{name}.html" in pages, f"notebook {name} has no page in the book"


def test_pages_load_without_javascript_errors(visits):
    def check(rel, record):
        if record["status"] != 200:
            yield f"HTTP status {record['status']}"
        for err in record["errors"]:
            yield f"uncaught JavaScript error: {err}"
        for message in record["console"]:
            if not any(pattern.search(message) for pattern in ALLOWED_CONSOLE_ERRORS):
                yield f"console error: {message}"
        for failure in record["failed"]:
            yield f"request failed: {failure}"

    problems = _problems(visits, check)
    assert not problems, "\n".join(problems)


def test_every_declared_font_is_served(visits):
    """Every @font-face URL of every page resolves (the widget icons' fonts come from the vendored folder)."""
    def check(rel, record):
        for font in record["fonts"]:
            if font["status"] != 200:
                yield f"font {font['url']}: HTTP {font['status']}"

    assert any(record["fonts"] for record in visits.values()), "no page declared a font: the check saw nothing"
    problems = _problems(visits, check)
    assert not problems, "\n".join(problems)


def test_no_request_leaves_the_machine(visits):
    """MathJax, require.js, the widget manager and fonts all come from the build itself."""
    problems = _problems(visits, lambda rel, r: (f"external request {url}" for url in r["external"]))
    assert not problems, "\n".join(problems)


def test_every_image_loaded(visits):
    def check(rel, record):
        for image in record["images"]:
            if not image["complete"] or image["width"] == 0:
                yield f"image did not load: {image['src'][:120]}"

    problems = _problems(visits, check)
    assert not problems, "\n".join(problems)


def test_math_is_typeset(visits):
    def check(rel, record):
        if record["rawTex"]:
            yield f"raw TeX delimiters left in the text: {record['rawTex']}"
        if record["mathNodes"] and record["typeset"] == 0:
            yield f"{record['mathNodes']} math nodes but nothing typeset by MathJax"

    problems = _problems(visits, check)
    assert not problems, "\n".join(problems)
    assert any(r["typeset"] for r in visits.values()), "no page has typeset math: is MathJax loading?"


def test_notebook_pages_show_figures(visits):
    notebook_pages = {rel: r for rel, r in visits.items() if rel.startswith("notebooks/")}
    assert notebook_pages, "no executed notebook page in the book"
    problems = [f"{rel}: no figure in the outputs" for rel, r in notebook_pages.items() if r["outputImages"] == 0]
    assert not problems, "\n".join(problems)


def test_widgets_render(visits):
    widget_pages = {rel: r for rel, r in visits.items() if r["widgetViews"]}
    assert "notebooks/intro_forgetting.html" in widget_pages, "the introduction's widget was not saved"

    def check(rel, record):
        if record["widgetViews"] and record["widgetsRendered"] == 0:
            yield f"{record['widgetViews']} widget views but none rendered"
        if record["widgetErrors"]:
            yield f"{record['widgetErrors']} widgets rendered as errors"

    problems = _problems(widget_pages, check)
    assert not problems, "\n".join(problems)


class _Anchors(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.ids: set[str] = set()

    def handle_starttag(self, tag, attrs):
        for key, value in attrs:
            if key in {"id", "name"} and value:
                self.ids.add(value)


@functools.lru_cache(maxsize=None)
def _anchors(path: Path) -> frozenset[str]:
    parser = _Anchors()
    parser.feed(path.read_text(errors="replace"))
    return frozenset(parser.ids)


def test_internal_links_resolve(visits, smoke_book, server):
    def check(rel, record):
        base = server + rel
        for href in record["links"]:
            if href.startswith(("mailto:", "javascript:", "data:")):
                continue
            url = urlparse(urljoin(base, href))
            if url.netloc != urlparse(server).netloc:
                continue
            target = smoke_book / unquote(url.path).lstrip("/")
            if target.is_dir():
                target = target / "index.html"
            if not target.exists():
                yield f"broken link {href!r} (no {target.relative_to(smoke_book)})"
                continue
            if url.fragment and target.suffix == ".html" and unquote(url.fragment) not in _anchors(target):
                yield f"link {href!r}: no anchor #{url.fragment} in {target.relative_to(smoke_book)}"

    problems = _problems(visits, check)
    assert not problems, "\n".join(problems)


def test_scorecard_page_lists_the_claims(visits):
    text = visits["book/scorecard.html"]["text"]
    assert "claims reproduced" in text, text[:2000]
    assert "Introduction" in text
    assert "fashion-mnist" in text.lower() or os.environ.get("BOOK_TEST_DATASET"), "the scorecard must say which dataset ran"


def test_figure_captions_say_what_ran(visits):
    text = visits["notebooks/intro_forgetting.html"]["text"]
    assert "profile smoke" in text and "seed 0" in text, "the notebook page must say what was run"


def test_screenshots_saved(visits):
    for rel, record in visits.items():
        shot = record["screenshot"]
        assert shot.exists() and shot.stat().st_size > 1000, f"no screenshot for {rel}"
