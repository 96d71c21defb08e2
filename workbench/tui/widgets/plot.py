"""`MetricPlot`: our plot widget. It draws a backend-free `PlotSpec` (workbench.plotting) through
textual-plotext; nothing else in the app touches plotext, so the backend can change in one place.

A spec is only drawn when the widget is on screen: hidden plots cost nothing, and a plot shown again draws
its latest spec.

Why `render_line` instead of textual-plotext's `render()`: that one asks plotext for an ANSI string
(built cell by cell), has Rich parse the escapes back into styled text, and has Textual cut the text into
lines again, on every repaint. Here plotext's cell matrix (characters + colours) becomes one `Strip` per
row directly, once per drawn spec; repaints reuse the strips. With four live plots this is most of what the
UI thread spends while a run trains (see benchmarks/tui_overhead.py).
"""
from __future__ import annotations

from typing import Any

from plotext import _utility as plotext_utility
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual.strip import Strip
from textual_plotext import PlotextPlot

from workbench.plotting import PlotSpec, draw

_STYLES: dict[tuple, Style] = {}


def _hashable(color: Any) -> Any:
    return tuple(color) if isinstance(color, list) else color


def cell_style(foreground: Any, style: Any, background: Any) -> Style:
    """The Rich style of a plotext cell, decoded once per colour triple from the escape code plotext
    itself would print (so colours match plotext's own output exactly)."""
    key = (_hashable(foreground), _hashable(style), _hashable(background))
    cached = _STYLES.get(key)
    if cached is None:
        text = Text.from_ansi(plotext_utility.colors_to_ansi(foreground, style, background) + "x")
        cached = _STYLES[key] = Style.combine(span.style for span in text.spans if isinstance(span.style, Style))
    return cached


def matrix_strips(matrix: Any) -> list[Strip]:
    """One Strip per row of plotext's cell matrix (its row 0 is the bottom line), runs of equal colour
    merged into one segment."""
    strips = []
    for row in reversed(range(matrix.rows)):
        markers, fg, st, bg = matrix.marker[row], matrix.fullground[row], matrix.style[row], matrix.background[row]
        segments, run, run_key = [], [], None
        for col in range(matrix.cols):
            key = (fg[col], st[col], bg[col])
            if key != run_key and run:
                segments.append(Segment("".join(run), cell_style(*run_key)))
                run = []
            run_key = key
            run.append(markers[col])
        if run:
            segments.append(Segment("".join(run), cell_style(*run_key)))
        strips.append(Strip(segments, matrix.cols))
    return strips


class MetricPlot(PlotextPlot):
    DEFAULT_CSS = """
    MetricPlot { height: 1fr; min-height: 8; }
    """

    def __init__(self, spec: PlotSpec | None = None, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.spec = spec
        self._drawn: PlotSpec | None = None
        self._strips: list[Strip] | None = None
        self._strips_key: tuple = ()
        self.draws = 0  # how many times a spec was actually drawn (tests and the overhead benchmark read it)
        self.points = 0

    def set_spec(self, spec: PlotSpec) -> None:
        """Store `spec`; draw it now if the plot is visible, else when it next becomes visible."""
        self.spec = spec
        self._draw_if_visible()

    def on_show(self) -> None:
        self._draw_if_visible()

    def on_resize(self) -> None:
        self._drawn = None
        self._draw_if_visible()

    def _draw_if_visible(self) -> None:
        # An equal spec draws the same picture: a toggle that changes one plot redraws only that one, and a
        # paused run redraws nothing.
        if self.spec is None or self.spec == self._drawn or not self.is_mounted or not self.display:
            return
        if not self.is_on_screen:
            return
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        width, height = self.size.width or 40, self.size.height or 10
        self.points = draw(plt, self.spec, width, height)
        self._drawn = self.spec
        self._strips = None
        self.draws += 1
        self.refresh()

    def _build_strips(self, width: int, height: int) -> list[Strip]:
        plt = self.plt
        plt.plotsize(width, height)
        plt._set_size(width, height)  # textual-plotext does both: plotsize alone does not always resize
        plt.theme(self._get_plotext_theme_name(self.app.theme))
        plt._set_sizes()
        plt._build_matrix()
        return matrix_strips(plt.monitor.matrix)

    def render_line(self, y: int) -> Strip:
        width, height = self.content_region.size
        key = (width, height, self.app.theme)
        if self._strips is None or key != self._strips_key:
            self._strips, self._strips_key = self._build_strips(width, height), key
        if y < len(self._strips):
            return self._strips[y].crop_extend(0, width, None)
        return Strip.blank(width)
