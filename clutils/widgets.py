"""Interactive figures that work on the book's static pages: pre-rendered states linked in the browser.

A widget whose Python callback redraws a figure needs a running kernel: on the
rendered (static) page of the book, moving its slider changes nothing. This
module draws every state in advance instead and lets the browser choose which
one to show:

* each control (:func:`slider`, :func:`dropdown`, :func:`toggle`) offers a short
  list of values;
* :func:`prerendered` calls ``render(**state)`` once for every combination of
  the controls' values (the Cartesian product, checked against ``max_states``),
  keeps each figure as a PNG (palette-quantised, a few kB to a few tens of kB),
  and arranges them in nested :class:`ipywidgets.Stack` s, one level per control;
* every control's ``index`` is linked to the ``selected_index`` of every stack of
  its level with :func:`ipywidgets.jsdlink`, a link that runs in the browser.

The saved widget state therefore holds all the figures and the links between
them, so the page works with no kernel (the ipywidgets HTML embed manager the
book vendors renders it), and the same widget works unchanged in a live
notebook. :func:`tabbed` puts several such viewers behind tabs (a tab bar is
itself linked in the browser), for state spaces whose shape differs per tab.

Example, one call per widget::

    viewer = widgets.prerendered(
        lambda a, epsilon: draw(a, epsilon),  # returns a matplotlib Figure (or PNG bytes)
        [widgets.slider("a", [0.5, 1, 2, 5], value=2), widgets.slider("epsilon", [0, 0.5])],
        caption=lambda a, epsilon: f"a = {a}, epsilon = {epsilon}",
    )
    viewer

Keep the state space small: every state is a PNG stored in the page (the
notebook's widget state), so states x image size is what the reader downloads.
"""
from __future__ import annotations

import html
import io
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, Sequence

import ipywidgets

#: The largest number of pre-rendered states :func:`prerendered` accepts unless told otherwise.
MAX_STATES = 64
#: Above this many bytes of PNG in one viewer, :func:`prerendered` warns (the page gets heavy).
MAX_BYTES = 2_000_000
#: Control kinds and the ipywidgets selection widget that draws each one.
KINDS = {
    "slider": ipywidgets.SelectionSlider,
    "dropdown": ipywidgets.Dropdown,
    "toggle": ipywidgets.ToggleButtons,
}
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@dataclass(frozen=True)
class Control:
    """One control of a pre-rendered viewer: a keyword of ``render`` and the values it may take.

    ``labels`` are what the reader sees (one per value); ``value`` is the value
    shown first; ``kind`` is one of :data:`KINDS`.
    """

    name: str
    values: tuple
    labels: tuple[str, ...]
    value: Any
    kind: str = "slider"
    description: str | None = None

    def __post_init__(self) -> None:
        if not self.name or not self.name.isidentifier():
            raise ValueError(f"a control's name must be a Python identifier (a keyword of render), got {self.name!r}")
        if self.kind not in KINDS:
            raise ValueError(f"control {self.name!r}: kind must be one of {sorted(KINDS)}, got {self.kind!r}")
        if not self.values:
            raise ValueError(f"control {self.name!r} has no values")
        if len(self.labels) != len(self.values):
            raise ValueError(f"control {self.name!r}: {len(self.labels)} labels for {len(self.values)} values")
        if len(set(self.labels)) != len(self.labels):
            raise ValueError(f"control {self.name!r}: the labels must differ, got {list(self.labels)}")
        if self.value not in self.values:
            raise ValueError(f"control {self.name!r}: the initial value {self.value!r} is not one of {list(self.values)}")

    @property
    def index(self) -> int:
        """Position of the initial value."""
        return list(self.values).index(self.value)

    def widget(self) -> ipywidgets.Widget:
        """The selection widget the reader moves (its ``index`` drives the stacks)."""
        layout = ipywidgets.Layout(width="420px") if self.kind == "slider" else ipywidgets.Layout()
        options = dict(options=list(self.labels), index=self.index, description=self.description or self.name,
                       layout=layout, style={"description_width": "initial"})
        if self.kind == "slider":
            options["continuous_update"] = True
        return KINDS[self.kind](**options)


def _control(kind: str, name: str, values: Iterable, value: Any, labels: Sequence[str] | Callable | None,
             description: str | None) -> Control:
    values = tuple(values)
    if labels is None:
        labels = tuple(f"{v:g}" if isinstance(v, float) else str(v) for v in values)
    elif callable(labels):
        labels = tuple(str(labels(v)) for v in values)
    else:
        labels = tuple(str(label) for label in labels)
    if value is None and values:
        value = values[0]
    return Control(name, values, labels, value, kind, description)


def slider(name: str, values: Iterable, *, value: Any = None, labels: Sequence[str] | Callable | None = None,
           description: str | None = None) -> Control:
    """A slider over ``values`` (ordered: numbers, steps of training); ``value`` first shown (default: the first)."""
    return _control("slider", name, values, value, labels, description)


def dropdown(name: str, values: Iterable, *, value: Any = None, labels: Sequence[str] | Callable | None = None,
             description: str | None = None) -> Control:
    """A drop-down list over ``values`` (unordered choices: strategies, datasets)."""
    return _control("dropdown", name, values, value, labels, description)


def toggle(name: str, values: Iterable, *, value: Any = None, labels: Sequence[str] | Callable | None = None,
           description: str | None = None) -> Control:
    """A row of toggle buttons over ``values`` (two to five short choices)."""
    return _control("toggle", name, values, value, labels, description)


def figure_png(fig, *, dpi: int = 80, colors: int | None = 256) -> bytes:
    """``fig`` as PNG bytes, closed afterwards; ``colors``: quantise to a palette of that many colours.

    A palette PNG of a line plot or a heat map is about three times smaller than
    the RGBA one and looks the same (no dithering); ``colors=None`` keeps RGBA.
    """
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    try:
        fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    finally:
        plt.close(fig)
    data = buffer.getvalue()
    if colors is None:
        return data
    if not 2 <= colors <= 256:
        raise ValueError(f"colors must be between 2 and 256 (or None), got {colors}")
    from PIL import Image

    image = Image.open(io.BytesIO(data))
    if image.mode in ("RGBA", "LA", "P"):
        background = Image.new("RGB", image.size, "white")
        rgba = image.convert("RGBA")
        background.paste(rgba, mask=rgba.getchannel("A"))
        image = background
    quantised = image.convert("RGB").quantize(colors=colors, method=Image.Quantize.MEDIANCUT,
                                              dither=Image.Dither.NONE)
    out = io.BytesIO()
    quantised.save(out, format="PNG", optimize=True)
    return out.getvalue()


def _as_png(drawn, state: Mapping[str, Any], dpi: int, colors: int | None) -> bytes:
    if isinstance(drawn, (bytes, bytearray)):
        if not bytes(drawn[:8]) == _PNG_MAGIC:
            raise ValueError(f"render({_describe(state)}) returned bytes that are not a PNG")
        return bytes(drawn)
    if hasattr(drawn, "savefig"):
        return figure_png(drawn, dpi=dpi, colors=colors)
    raise TypeError(f"render({_describe(state)}) must return a matplotlib Figure or PNG bytes, "
                    f"got {type(drawn).__name__}")


def _describe(state: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in state.items())


class Prerendered(ipywidgets.VBox):
    """The controls above the pre-rendered figures (an ordinary ``VBox`` in the saved widget state).

    ``controls``: name -> the selection widget; ``states``: every state, in the
    order they were rendered; ``total_bytes``: the PNG bytes stored. In a live
    kernel :meth:`select` sets the controls from Python (the browser links do the rest).
    """

    def __init__(self, children, *, controls: dict, specs: tuple, states: list, stacks: list,
                 links: list, total_bytes: int, **kwargs) -> None:
        super().__init__(children, **kwargs)
        self.controls = controls
        self.specs = specs
        self.states = states
        self.stacks = stacks  # one list of Stack widgets per control level
        self.links = links
        self.total_bytes = total_bytes

    def select(self, **state) -> None:
        """Show ``state`` (values of the controls, by name): sets the controls' and the stacks' indices."""
        for name, value in state.items():
            depth = next((d for d, s in enumerate(self.specs) if s.name == name), None)
            if depth is None:
                raise KeyError(f"no control named {name!r}; the controls are {[s.name for s in self.specs]}")
            spec = self.specs[depth]
            if value not in spec.values:
                raise ValueError(f"control {name!r} has no value {value!r}; its values are {list(spec.values)}")
            index = spec.values.index(value)
            self.controls[name].index = index
            for stack in self.stacks[depth]:
                stack.selected_index = index  # what the browser link does, for a Python-side reader

    def shown(self) -> ipywidgets.Widget:
        """The leaf (image, or image and caption) the stacks currently show."""
        node = self.children[-1]
        while isinstance(node, ipywidgets.Stack):
            node = node.children[node.selected_index]
        return node


def prerendered(render: Callable[..., Any], controls: Sequence[Control], *,
                caption: Callable[..., str] | None = None, max_states: int = MAX_STATES,
                max_bytes: int = MAX_BYTES, dpi: int = 80, colors: int | None = 256,
                max_width: str = "100%") -> Prerendered:
    """Render ``render(**state)`` for every state of ``controls`` and link the controls to the figures in the browser.

    ``render`` returns a matplotlib Figure (saved at ``dpi``, palette-quantised
    to ``colors``, then closed) or PNG bytes. ``caption(**state)``, if given, is
    a sentence shown as text under each figure (it changes with the state).
    Raises ``ValueError`` before drawing anything when the controls span more
    than ``max_states`` states; warns when the PNGs exceed ``max_bytes``.
    """
    specs = tuple(controls)
    if not specs:
        raise ValueError("prerendered needs at least one control")
    if not all(isinstance(s, Control) for s in specs):
        raise TypeError("controls must be made with clutils.widgets.slider / dropdown / toggle")
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise ValueError(f"two controls share a name: {names}")
    n_states = 1
    for spec in specs:
        n_states *= len(spec.values)
    if n_states > max_states:
        sizes = " x ".join(f"{len(s.values)} ({s.name})" for s in specs)
        raise ValueError(f"{sizes} = {n_states} states to pre-render, more than max_states={max_states}: "
                         "offer fewer values per control (every state is an image stored in the page)")

    states: list[dict] = []
    stacks: list[list[ipywidgets.Stack]] = [[] for _ in specs]
    total = 0
    # One layout (and one caption style) shared by all the containers, images and captions: the
    # saved state stores every model in full, so a model per widget would add ~1 kB per state.
    plain = ipywidgets.Layout()
    image_layout = ipywidgets.Layout(max_width=max_width, align_self="flex-start")  # natural size, never stretched
    caption_style = ipywidgets.widgets.widget_string.HTMLStyle()

    def leaf(state: dict) -> ipywidgets.Widget:
        nonlocal total
        png = _as_png(render(**state), state, dpi, colors)
        total += len(png)
        states.append(dict(state))
        image = ipywidgets.Image(value=png, format="png", layout=image_layout)
        if caption is None:
            return image
        text = ipywidgets.HTML(f'<p class="prerendered-caption">{html.escape(str(caption(**state)))}</p>',
                               layout=plain, style=caption_style)
        return ipywidgets.VBox([image, text], layout=plain)

    def level(depth: int, state: dict) -> ipywidgets.Widget:
        spec = specs[depth]
        children = []
        for value in spec.values:
            inner = {**state, spec.name: value}
            children.append(leaf(inner) if depth == len(specs) - 1 else level(depth + 1, inner))
        stack = ipywidgets.Stack(children, selected_index=spec.index, layout=plain)
        stacks[depth].append(stack)
        return stack

    figures = level(0, {})
    widgets_by_name = {spec.name: spec.widget() for spec in specs}
    links = [ipywidgets.jsdlink((widgets_by_name[spec.name], "index"), (stack, "selected_index"))
             for spec, level_stacks in zip(specs, stacks) for stack in level_stacks]
    if total > max_bytes:
        warnings.warn(f"{n_states} pre-rendered states take {total / 1e6:.1f} MB of PNG (more than "
                      f"{max_bytes / 1e6:.1f} MB): lower dpi, the figure size or the number of values",
                      stacklevel=2)
    row = ipywidgets.HBox(list(widgets_by_name.values()), layout=ipywidgets.Layout(flex_flow="row wrap"))
    return Prerendered([row, figures], controls=widgets_by_name, specs=specs, states=states, stacks=stacks,
                       links=links, total_bytes=total)


def tabbed(pages: Mapping[str, ipywidgets.Widget], *, selected: str | None = None) -> ipywidgets.Tab:
    """Several viewers behind tabs titled by the keys of ``pages`` (the tab bar switches in the browser too)."""
    if not pages:
        raise ValueError("tabbed needs at least one page")
    titles = [str(t) for t in pages]
    if selected is not None and selected not in pages:
        raise ValueError(f"no page titled {selected!r}; the pages are {titles}")
    index = titles.index(selected) if selected is not None else 0
    return ipywidgets.Tab(list(pages.values()), titles=titles, selected_index=index)


__all__ = ["Control", "KINDS", "MAX_BYTES", "MAX_STATES", "Prerendered", "dropdown", "figure_png",
           "prerendered", "slider", "tabbed", "toggle"]
