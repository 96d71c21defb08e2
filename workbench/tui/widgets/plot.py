"""`MetricPlot`: our plot widget. It draws a backend-free `PlotSpec` (workbench.plotting) through
textual-plotext; nothing else in the app touches plotext, so the backend can change in one place.

A spec is only drawn when the widget is on screen: hidden plots cost nothing, and a plot shown again draws
its latest spec.

Why `render_line` instead of textual-plotext's `render()`: that one asks plotext for an ANSI string
(built cell by cell), has Rich parse the escapes back into styled text, and has Textual cut the text into
lines again, on every repaint. Here plotext's cell matrix (characters + colours) becomes one `Strip` per
row directly, once per drawn spec; repaints reuse the strips. With four live plots this is most of what the
UI thread spends while a run trains (see benchmarks/tui_overhead.py).

A big spec (over BACKGROUND_POINTS points: a 100k-step run) costs 70-150 ms to draw, mostly filtering and
down-sampling its points: it is drawn in a thread worker instead, into a fresh plotext figure (plotext's
`Plot` holds no global state), strips included, and the figure is swapped in when it is ready; until then
the previous picture stays. `set_spec_later` does the same for a spec that is itself expensive to build.
Every drawing, inline or not, goes into a fresh figure, so the two paths draw the same picture (a test
compares them). A drawing started before a newer spec arrived is stale: its result is dropped.
"""
from __future__ import annotations

import threading
from typing import Any, Callable

from plotext import _utility as plotext_utility
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual import on, work
from textual.message import Message
from textual.strip import Strip
from textual_plotext import PlotextPlot
from textual_plotext.plot import Plot

from workbench.plotting import PlotSpec, draw

BACKGROUND_POINTS = 20_000  # above this many points a spec is drawn off the UI thread (about 15 ms inline)
# One drawing at a time, whatever the number of plots: drawing is pure Python, so each extra thread doing it
# is one more contender for the GIL that the UI thread waits behind (4 plots at once stretched a 100 ms
# screen update to 900 ms; a thread waiting on this lock does not contend).
_ONE_DRAWING = threading.Lock()

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


def figure_strips(figure: Plot, width: int, height: int, theme: str) -> list[Strip]:
    """Lay out a drawn figure at `width` x `height` cells in plotext theme `theme`, as strips."""
    figure.plotsize(width, height)
    figure._set_size(width, height)  # textual-plotext does both: plotsize alone does not always resize
    figure.theme(theme)
    figure._set_sizes()
    figure._build_matrix()
    return matrix_strips(figure.monitor.matrix)


class MetricPlot(PlotextPlot):
    DEFAULT_CSS = """
    MetricPlot { height: 1fr; min-height: 8; }
    """

    class Drawn(Message):
        """A drawing made in the worker: the figure and its strips (or why it could not be drawn)."""

        def __init__(self, job: int, spec: PlotSpec | None, figure: Plot | None, points: int,
                     strips: tuple[list[Strip], tuple] | None, error: str | None = None) -> None:
            super().__init__()
            self.job, self.spec, self.figure, self.points, self.strips, self.error = \
                job, spec, figure, points, strips, error

    def __init__(self, spec: PlotSpec | None = None, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.spec = spec
        self._build: Callable[[], PlotSpec] | None = None  # a spec asked for by set_spec_later, not built yet
        self._drawn: PlotSpec | None = None
        self._strips: list[Strip] | None = None
        self._strips_key: tuple = ()
        self._job = 0  # drawings started in the worker; only the latest one's result is shown
        self._job_for: tuple = ()  # what the latest one draws, so an unchanged request does not restart it
        self.draws = 0  # how many times a spec was actually drawn (tests and the overhead benchmark read it)
        self.points = 0

    @property
    def drawing(self) -> bool:
        """A drawing is under way in the worker."""
        return bool(self._job_for)

    @property
    def up_to_date(self) -> bool:
        """The latest spec given is the picture drawn."""
        return self._build is None and self.spec is not None and self._drawn is self.spec and not self.drawing

    def set_spec(self, spec: PlotSpec) -> None:
        """Store `spec`; draw it now if the plot is visible, else when it next becomes visible."""
        self.spec, self._build = spec, None
        self._drop_drawing()
        self.draw_if_visible()

    def set_spec_later(self, build: Callable[[], PlotSpec]) -> None:
        """Like set_spec with the spec `build()` returns, built in the drawing worker (off the UI thread)
        when the plot is visible. `build` runs on another thread: it must only read what it is given."""
        self._build = build
        self._drop_drawing()
        self.draw_if_visible()

    def _drop_drawing(self) -> None:
        """A drawing under way shows what was asked before: its result will be dropped."""
        self._job, self._job_for = self._job + 1, ()

    def on_show(self) -> None:
        self.draw_if_visible()

    def on_resize(self) -> None:
        self._drawn = None
        self.draw_if_visible()

    def draw_if_visible(self) -> None:
        """Draw the latest spec if the plot is on screen and has not drawn it (a plot shows itself when it
        becomes visible; a container shown again calls this after its layout, see Dashboard)."""
        if not self.is_mounted or not self.display or not self.is_on_screen:
            return
        if self._build is None and (self.spec is None or self.spec == self._drawn):
            # An equal spec draws the same picture: a toggle that changes one plot redraws only that one,
            # and a paused run redraws nothing.
            return
        width, height = self.size.width or 40, self.size.height or 10
        if self._build is None and self.spec.points <= BACKGROUND_POINTS:
            figure = Plot()
            self._show_figure(self.spec, figure, draw(figure, self.spec, width, height), None)
            return
        content = tuple(self.content_region.size)
        job_for = (self._build or self.spec, width, height, content, self.app.theme)
        if job_for == self._job_for:
            return  # that very drawing is under way
        self._job, self._job_for = self._job + 1, job_for
        self._draw_in_worker(self._job, self._build, self.spec, self._drawn, (width, height), content,
                             self.app.theme, self._get_plotext_theme_name(self.app.theme))

    @work(thread=True, exclusive=True, group="plot-draw", exit_on_error=False)
    def _draw_in_worker(self, job: int, build: Callable[[], PlotSpec] | None, spec: PlotSpec | None,
                        drawn: PlotSpec | None, size: tuple[int, int], content: tuple[int, int], app_theme: str,
                        theme: str) -> None:
        try:
            with _ONE_DRAWING:
                if job != self._job:
                    return  # made stale while it waited its turn
                if build is not None:
                    spec = build()
                if spec == drawn:
                    self.post_message(self.Drawn(job, spec, None, 0, None))
                    return
                figure = Plot()
                points = draw(figure, spec, *size)
                strips = figure_strips(figure, *content, theme)
            self.post_message(self.Drawn(job, spec, figure, points, (strips, (*content, app_theme))))
        except Exception as exc:  # a plot that cannot be drawn is no reason to stop the app
            self.post_message(self.Drawn(job, spec, None, 0, None, f"{type(exc).__name__}: {exc}"))

    @on(Drawn)
    def _drawn_in_worker(self, event: Drawn) -> None:
        event.stop()
        if event.job != self._job:
            return  # a newer spec (or size) came in meanwhile: its drawing is the one to show
        self._job_for = ()
        if event.error is not None:
            self.set_spec(PlotSpec(event.spec.title if event.spec else "plot",
                                   empty_message=f"cannot draw it ({event.error})"))
            return
        if self._build is not None:  # the build this drawing ran (any newer request would have a newer job)
            self.spec, self._build = event.spec, None
        if event.figure is not None:
            self._show_figure(event.spec, event.figure, event.points, event.strips)

    def _show_figure(self, spec: PlotSpec, figure: Plot, points: int,
                     strips: tuple[list[Strip], tuple] | None) -> None:
        self._plot = figure  # textual-plotext's figure: its own render() and plt show this one too
        self.points = points
        self._drawn = spec
        self._strips, self._strips_key = strips if strips is not None else (None, ())
        self.draws += 1
        self.refresh()

    def _build_strips(self, width: int, height: int) -> list[Strip]:
        return figure_strips(self.plt, width, height, self._get_plotext_theme_name(self.app.theme))

    def render_line(self, y: int) -> Strip:
        width, height = self.content_region.size
        key = (width, height, self.app.theme)
        if self._strips is None or key != self._strips_key:
            self._strips, self._strips_key = self._build_strips(width, height), key
        if y < len(self._strips):
            return self._strips[y].crop_extend(0, width, None)
        return Strip.blank(width)
