"""The book's widgets work on the static pages: moved in headless Chromium, with no kernel, they change the figure.

Each widget is built with :func:`clutils.widgets.prerendered` (every state drawn
in advance, the controls linked to the figures in the browser). The smoke
book and the offline Chromium come from ``test_book_browser.py`` (the same
session-scoped build). Each test opens a notebook's page, reads the figure
shown (a hash of the image's bytes) and the sentence under it, moves a control
(keyboard on the slider's handle, a choice in the drop-down list, a click on a
tab) and checks that both changed to the chosen state's. Short loop while
developing: ``BOOK_TEST_ONLY="alasso_1* ar1_3* intro*" pytest tests/test_widgets_browser.py``.
"""
from __future__ import annotations

import re
import time

import pytest

from test_book_browser import (  # noqa: F401  (smoke_book and server are fixtures used below)
    ALLOWED_CONSOLE_ERRORS, launch_chromium, open_offline, playwright_or_skip, server, smoke_book,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

#: A busy CI machine takes a while to load the pages' 4 MB of JavaScript and render the widgets.
TIMEOUT_MS = 180_000

#: What every pre-rendered viewer on the page shows right now: one entry per visible figure.
SHOWN_JS = r"""
async () => {
  const visible = (el) => el.checkVisibility ? el.checkVisibility() : el.offsetParent !== null;
  const shown = [];
  for (const caption of document.querySelectorAll('.prerendered-caption')) {
    if (!visible(caption)) continue;
    const img = caption.closest('.widget-vbox').querySelector('img.widget-image');
    const bytes = new Uint8Array(await (await fetch(img.src)).arrayBuffer());
    let hash = 2166136261;  // FNV-1a of the PNG bytes
    for (const b of bytes) { hash ^= b; hash = Math.imul(hash, 16777619) >>> 0; }
    shown.push({caption: caption.textContent, image: `${hash.toString(16)}:${bytes.length}`,
                loaded: img.complete && img.naturalWidth > 0});
  }
  return shown;
}
"""


@pytest.fixture(scope="module")
def browser_context(smoke_book):
    sync_playwright = playwright_or_skip()
    with sync_playwright() as p:
        browser = launch_chromium(p)
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        context.set_default_timeout(TIMEOUT_MS)
        yield context
        browser.close()


class WidgetPage:
    """One notebook's page, open in Chromium, with its widgets rendered."""

    def __init__(self, context, server: str, rel: str):
        self.rel = rel
        self.page, self.record = open_offline(context, server)
        response = self.page.goto(server + rel, wait_until="load")
        assert response is not None and response.status == 200, f"{rel}: HTTP {response and response.status}"
        self.page.wait_for_selector(".prerendered-caption", state="visible")

    def shown(self) -> list[dict]:
        shown = self.page.evaluate(SHOWN_JS)
        assert shown, f"{self.rel}: no pre-rendered figure is visible"
        assert all(s["loaded"] for s in shown), f"{self.rel}: a widget's image did not load: {shown}"
        return shown

    def one_shown(self) -> dict:
        shown = self.shown()
        assert len(shown) == 1, f"{self.rel}: expected one visible pre-rendered figure, got {shown}"
        return shown[0]

    def wait_for_caption(self, pattern: str, seconds: float = 60) -> dict:
        """Poll until the visible figure's sentence matches ``pattern`` (the links run asynchronously)."""
        deadline = time.monotonic() + seconds
        while True:
            now = self.one_shown()
            if re.match(pattern, now["caption"]):
                return now
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.rel}: the figure's sentence never matched {pattern!r}; "
                                     f"it says {now['caption']!r}")
            self.page.wait_for_timeout(200)

    def control(self, css: str, description: str):
        """The visible control of class ``css`` whose description label is exactly ``description``."""
        label = self.page.locator("label.widget-label", has_text=re.compile(rf"^{re.escape(description)}$"))
        found = self.page.locator(css).filter(has=label).filter(visible=True)
        assert found.count() == 1, f"{self.rel}: {found.count()} visible controls {css} labelled {description!r}"
        return found

    def press_on_slider(self, description: str, *keys: str) -> None:
        handle = self.control(".widget-hslider", description).locator(".noUi-handle")
        handle.focus()
        for key in keys:
            handle.press(key)

    def check_no_errors(self) -> None:
        problems = [f"uncaught JavaScript error: {e}" for e in self.record["errors"]]
        problems += [f"console error: {m}" for m in self.record["console"]
                     if not any(p.search(m) for p in ALLOWED_CONSOLE_ERRORS)]
        problems += [f"external request {u}" for u in self.record["external"]]
        assert not problems, f"{self.rel}:\n" + "\n".join(problems)

    def close(self) -> None:
        self.page.close()


@pytest.fixture
def open_page(browser_context, server):
    opened = []

    def open_(rel: str) -> WidgetPage:
        opened.append(WidgetPage(browser_context, server, rel))
        return opened[-1]

    yield open_
    for page in opened:
        page.close()


def test_alasso_sliders_change_the_surrogate_figure(open_page):
    page = open_page("notebooks/alasso_1_surrogates.html")
    start = page.wait_for_caption(r"a = 2, epsilon = 0: ")
    page.press_on_slider("a", "Home")
    flatter = page.wait_for_caption(r"a = 0\.5, epsilon = 0: ")
    assert flatter["image"] != start["image"], "the caption moved but the figure did not"
    page.press_on_slider("epsilon", "End")
    lifted = page.wait_for_caption(r"a = 0\.5, epsilon = 0\.5: ")
    assert lifted["image"] not in {start["image"], flatter["image"]}
    page.press_on_slider("a", "ArrowRight")
    page.wait_for_caption(r"a = 0\.8, epsilon = 0\.5: ")
    page.press_on_slider("a", "End")
    page.wait_for_caption(r"a = 5, epsilon = 0\.5: ")
    page.check_no_errors()


def test_ar1_explorer_follows_the_strategy_and_the_batch(open_page):
    page = open_page("notebooks/ar1_3_confusion.html")
    start = page.wait_for_caption(r"naive, after batch \d+: ")
    batches = int(re.match(r"naive, after batch (\d+)", start["caption"]).group(1))
    assert batches > 1
    page.control(".widget-dropdown", "strategy").locator("select").select_option(label="ewc")
    ewc = page.wait_for_caption(rf"ewc, after batch {batches}: ")
    assert ewc["image"] != start["image"], "the strategy changed in the sentence but not in the figure"
    page.press_on_slider("batch", "Home")
    first = page.wait_for_caption(r"ewc, after batch 1: ")
    assert first["image"] not in {start["image"], ewc["image"]}
    page.control(".widget-dropdown", "strategy").locator("select").select_option(label="naive")
    page.wait_for_caption(r"naive, after batch 1: ")
    page.check_no_errors()


def test_intro_tabs_and_slider_change_the_snapshot(open_page):
    page = open_page("notebooks/intro_forgetting.html")
    start = page.wait_for_caption(r"domain-incremental, after task \d+: ")
    page.page.locator(".lm-TabBar-tab", has_text="class-incremental").click()
    last = page.wait_for_caption(r"class-incremental, after task \d+: ")
    assert last["image"] != start["image"]
    page.press_on_slider("moment", "Home")
    first = page.wait_for_caption(r"class-incremental, after task 1: ")
    assert first["image"] != last["image"]
    page.page.locator(".lm-TabBar-tab", has_text="domain-incremental").click()
    assert page.wait_for_caption(r"domain-incremental, after task \d+: ")["image"] == start["image"], \
        "each tab keeps its own moment: the first tab must still show its last task"
    page.check_no_errors()


def test_hat_gate_explorer_follows_the_slider(open_page):
    page = open_page("notebooks/hat_2_masks.html")
    start = page.wait_for_caption(r"s = 400: the gate is binary")
    page.press_on_slider("s", "Home")
    soft = page.wait_for_caption(r"s = 0\.0025: the gate is soft")
    assert soft["image"] != start["image"], "the caption moved but the figure did not"
    page.press_on_slider("s", "ArrowRight")
    nxt = page.wait_for_caption(r"s = 0\.1: ")
    assert nxt["image"] not in {start["image"], soft["image"]}
    page.press_on_slider("s", "End")
    assert page.wait_for_caption(r"s = 400: ")["image"] == start["image"]
    page.check_no_errors()
