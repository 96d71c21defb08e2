"""`MetricPlot`: our plot widget. It draws a backend-free `PlotSpec` (workbench.plotting) through
textual-plotext; nothing else in the app touches plotext, so the backend can change in one place.

A spec is only drawn when the widget is on screen: hidden plots cost nothing, and a plot shown again draws
its latest spec.
"""
from __future__ import annotations

from textual_plotext import PlotextPlot

from workbench.plotting import PlotSpec, draw


class MetricPlot(PlotextPlot):
    DEFAULT_CSS = """
    MetricPlot { height: 1fr; min-height: 8; }
    """

    def __init__(self, spec: PlotSpec | None = None, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.spec = spec
        self._drawn: PlotSpec | None = None
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
        if self.spec is None or self.spec is self._drawn or not self.is_mounted or not self.display:
            return
        if not self.is_on_screen:
            return
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        width, height = self.size.width or 40, self.size.height or 10
        self.points = draw(plt, self.spec, width, height)
        self._drawn = self.spec
        self.draws += 1
        self.refresh()
