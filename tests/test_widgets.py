"""clutils.widgets: pre-rendered states linked in the browser (the book's kernel-free widgets).

The links run in the browser (tests/test_widgets_browser.py drives them in
Chromium); here the same links are followed in Python, from the saved widget
state, to check that every position of the controls selects the figure drawn
for that state.
"""
from __future__ import annotations

import io
import warnings

import ipywidgets
import matplotlib
import pytest

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from PIL import Image  # noqa: E402

from clutils import widgets as cw  # noqa: E402


def tiny_figure(title: str):
    fig, ax = plt.subplots(figsize=(1.6, 1.2))
    ax.plot([0, 1], [0, len(title)])
    ax.set_title(title, fontsize=6)
    return fig


def follow_links(viewer: cw.Prerendered) -> None:
    """What ipywidgets' jsdlink does in the browser: copy every link's source trait onto its target."""
    for link in viewer.links:
        (source, source_trait), (target, target_trait) = link.source, link.target
        setattr(target, target_trait, getattr(source, source_trait))


def caption_of(leaf: ipywidgets.Widget) -> str:
    return leaf.children[1].value


@pytest.fixture(scope="module")
def drawn():
    """One viewer for the module (drawing is the slow part), and the states its render function saw."""
    calls = []

    def render(a, name):
        calls.append((a, name))
        return tiny_figure(f"{name} {a}")

    viewer = cw.prerendered(render, [cw.slider("a", [0.5, 1.0, 2.0], value=2.0), cw.dropdown("name", ["x", "y"])],
                            caption=lambda a, name: f"state a={a:g} name={name}", dpi=40)
    viewer.initially = (viewer.controls["a"].value, viewer.controls["name"].value, caption_of(viewer.shown()))
    return viewer, calls


@pytest.fixture
def viewer(drawn):
    viewer, _ = drawn
    viewer.select(a=2.0, name="x")  # back to the initial state
    return viewer


@pytest.fixture
def calls():
    return []


def test_every_state_is_rendered_once_in_product_order(drawn):
    viewer, calls = drawn
    assert calls == [(a, n) for a in (0.5, 1.0, 2.0) for n in ("x", "y")]
    assert viewer.states == [{"a": a, "name": n} for a, n in calls]
    assert viewer.total_bytes > 0
    assert plt.get_fignums() == [], "every rendered figure must be closed"


def test_controls_start_at_their_initial_value(viewer):
    assert isinstance(viewer.controls["a"], ipywidgets.SelectionSlider)
    assert isinstance(viewer.controls["name"], ipywidgets.Dropdown)
    assert viewer.initially == ("2", "x", '<p class="prerendered-caption">state a=2 name=x</p>')


def test_links_run_in_the_browser_one_per_stack(viewer):
    assert len(viewer.stacks[0]) == 1 and len(viewer.stacks[1]) == 3
    assert all(isinstance(link, ipywidgets.widgets.widget_link.DirectionalLink) for link in viewer.links)
    pairs = {(link.source[0].model_id, link.source[1], link.target[0].model_id, link.target[1])
             for link in viewer.links}
    expected = {(viewer.controls[name].model_id, "index", stack.model_id, "selected_index")
                for name, level in zip(("a", "name"), viewer.stacks) for stack in level}
    assert pairs == expected


@pytest.mark.parametrize("a_index,name_index", [(0, 0), (0, 1), (1, 1), (2, 0), (2, 1)])
def test_each_position_of_the_controls_shows_its_own_figure(viewer, a_index, name_index):
    viewer.controls["a"].index = a_index
    viewer.controls["name"].index = name_index
    follow_links(viewer)
    a, name = (0.5, 1.0, 2.0)[a_index], ("x", "y")[name_index]
    leaf = viewer.shown()
    assert caption_of(leaf) == f'<p class="prerendered-caption">state a={a:g} name={name}</p>'
    pngs = [state_leaf.children[0].value for state_leaf in _leaves(viewer)]
    assert len(set(pngs)) == len(pngs), "every state must have its own figure"
    assert leaf.children[0].value == pngs[viewer.states.index({"a": a, "name": name})]


def _leaves(viewer):
    out = []

    def walk(node):
        if isinstance(node, ipywidgets.Stack):
            for child in node.children:
                walk(child)
        else:
            out.append(node)

    walk(viewer.children[-1])
    return out


def test_select_sets_controls_and_stacks(viewer):
    viewer.select(a=0.5, name="y")
    assert viewer.controls["a"].index == 0 and viewer.controls["name"].index == 1
    assert "a=0.5 name=y" in caption_of(viewer.shown())
    with pytest.raises(KeyError, match="no control named 'b'"):
        viewer.select(b=1)
    with pytest.raises(ValueError, match="has no value 3"):
        viewer.select(a=3)


def test_saved_widget_state_holds_the_links_and_every_image(viewer):
    """What the book saves in the notebook (and the HTML embeds): the links and all the figures."""
    state = ipywidgets.Widget.get_manager_state(drop_defaults=True, widgets=None)["state"]
    link_models = [s for s in state.values() if s["model_name"] == "DirectionalLinkModel"]
    sources = {tuple(s["state"]["source"]) for s in link_models}
    assert (f"IPY_MODEL_{viewer.controls['a'].model_id}", "index") in sources
    assert (f"IPY_MODEL_{viewer.controls['name'].model_id}", "index") in sources
    ids = {leaf.children[0].model_id for leaf in _leaves(viewer)}
    assert ids <= set(state), "every pre-rendered image is part of the saved state"
    layouts = {leaf.layout.model_id for leaf in _leaves(viewer)} | {leaf.children[0].layout.model_id
                                                                    for leaf in _leaves(viewer)}
    assert len(layouts) == 2, "the leaves share their layouts (one model each for images and containers)"


def test_too_many_states_fail_before_drawing(calls):
    def render(**state):
        calls.append(state)
        return tiny_figure("x")

    with pytest.raises(ValueError, match=r"3 \(a\) x 4 \(b\) = 12 states .* max_states=10"):
        cw.prerendered(render, [cw.slider("a", [1, 2, 3]), cw.slider("b", [1, 2, 3, 4])], max_states=10)
    assert calls == []


def test_render_must_return_a_figure_or_png():
    with pytest.raises(TypeError, match=r"render\(a=1\) must return a matplotlib Figure or PNG bytes, got str"):
        cw.prerendered(lambda a: "figure", [cw.slider("a", [1])])
    with pytest.raises(ValueError, match="not a PNG"):
        cw.prerendered(lambda a: b"GIF89a....", [cw.slider("a", [1])])
    png = cw.figure_png(tiny_figure("t"), dpi=30)
    viewer = cw.prerendered(lambda a: png, [cw.toggle("a", ["p", "q"])])
    assert isinstance(viewer.controls["a"], ipywidgets.ToggleButtons)
    assert viewer.shown().value == png  # no caption: the leaf is the image itself


@pytest.mark.parametrize("make,match", [
    (lambda: cw.slider("a", [1, 2], value=3), "initial value 3 is not one of"),
    (lambda: cw.slider("a", []), "has no values"),
    (lambda: cw.slider("not a name", [1]), "Python identifier"),
    (lambda: cw.dropdown("a", [1, 2], labels=["same", "same"]), "labels must differ"),
    (lambda: cw.dropdown("a", [1, 2], labels=["one"]), "1 labels for 2 values"),
    (lambda: cw.Control("a", (1,), ("1",), 1, kind="knob"), "kind must be one of"),
])
def test_bad_controls_are_refused(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_bad_viewers_are_refused():
    with pytest.raises(ValueError, match="at least one control"):
        cw.prerendered(lambda: None, [])
    with pytest.raises(ValueError, match="share a name"):
        cw.prerendered(lambda a: None, [cw.slider("a", [1]), cw.dropdown("a", [2])])
    with pytest.raises(TypeError, match="slider / dropdown / toggle"):
        cw.prerendered(lambda a: None, [("a", [1])])


def test_labels_from_a_function():
    control = cw.slider("step", [0, 1, 2], labels=lambda k: f"after task {k + 1}", value=2)
    assert control.labels == ("after task 1", "after task 2", "after task 3")
    assert control.widget().value == "after task 3"


def test_figure_png_is_a_smaller_palette_png():
    quantised = cw.figure_png(tiny_figure("quantised"), dpi=60)
    full = cw.figure_png(tiny_figure("quantised"), dpi=60, colors=None)
    assert Image.open(io.BytesIO(quantised)).mode == "P"
    assert Image.open(io.BytesIO(full)).mode == "RGBA"
    assert Image.open(io.BytesIO(quantised)).size == Image.open(io.BytesIO(full)).size
    assert len(quantised) < len(full)
    with pytest.raises(ValueError, match="colors must be between 2 and 256"):
        cw.figure_png(tiny_figure("x"), colors=1)
    assert plt.get_fignums() == []


def test_heavy_viewers_warn():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cw.prerendered(lambda a: tiny_figure(str(a)), [cw.slider("a", [1, 2])], max_bytes=10, dpi=30)
    assert any("MB of PNG" in str(w.message) for w in caught)


def test_tabbed():
    pages = {"first": ipywidgets.Label("1"), "second": ipywidgets.Label("2")}
    tab = cw.tabbed(pages, selected="second")
    assert list(tab.titles) == ["first", "second"] and tab.selected_index == 1
    with pytest.raises(ValueError, match="no page titled 'third'"):
        cw.tabbed(pages, selected="third")
    with pytest.raises(ValueError, match="at least one page"):
        cw.tabbed({})
