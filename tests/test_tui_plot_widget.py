"""MetricPlot draws plotext's cell matrix straight into strips: the result must be what textual-plotext's
own render() (ANSI string parsed by Rich) shows, cell for cell and colour for colour."""
from __future__ import annotations

from textual.app import App, ComposeResult
from textual_plotext import PlotextPlot

from workbench.plotting import RunSeries, grad_spec, loss_spec
from tui_helpers import until
from workbench.tui.widgets.plot import MetricPlot


class One(App):
    def compose(self) -> ComposeResult:
        yield MetricPlot(id="plot")


def run_series() -> RunSeries:
    return RunSeries.from_events(
        {"type": "step", "step": i, "loss": 4.0 / (1 + i / 20) + 0.05 * (i % 5), "lr": 1e-3,
         "grad_norm": 0.5 + (i % 11) / 10, "clipped": i % 11 == 10, "tokens": 64 * (i + 1)} for i in range(300))


async def test_strips_equal_textual_plotext_render() -> None:
    app = One()
    async with app.run_test(size=(60, 16)) as pilot:
        await pilot.pause()
        plot = app.query_one(MetricPlot)
        width, height = plot.content_region.size
        run = run_series()
        for spec in (loss_spec(run, smoothing=0.9), grad_spec(run, max_norm=1.0), loss_spec(run, log_y=True)):
            plot.set_spec(spec)
            ours = plot._build_strips(width, height)
            theirs = app.console.render_lines(PlotextPlot.render(plot),
                                              app.console.options.update_dimensions(width, height), pad=False)
            assert len(ours) == len(theirs) == height
            for strip, line in zip(ours, theirs):
                ours_cells = [(ch, seg.style) for seg in strip for ch in seg.text]
                theirs_cells = [(ch, seg.style) for seg in line for ch in seg.text]
                assert [c for c, _ in ours_cells] == [c for c, _ in theirs_cells]
                assert [(s.color, s.bgcolor, s.bold) for _, s in ours_cells] == \
                       [(s.color, s.bgcolor, s.bold) if s else (None, None, None) for _, s in theirs_cells]
            assert any("x" in strip.text for strip in ours) or spec.title != "grad norm (pre-clip)"


async def test_an_equal_spec_is_not_drawn_again() -> None:
    app = One()
    async with app.run_test(size=(60, 16)) as pilot:
        await pilot.pause()
        plot = app.query_one(MetricPlot)
        run = run_series()
        plot.set_spec(loss_spec(run))
        drawn = plot.draws
        plot.set_spec(loss_spec(run))  # a new object with the same content: same picture, no work
        assert plot.draws == drawn
        plot.set_spec(loss_spec(run, smoothing=0.9))
        assert plot.draws == drawn + 1


class Two(App):
    def compose(self) -> ComposeResult:
        yield MetricPlot(id="inline")
        yield MetricPlot(id="worker")


def cells(strips) -> list[list[tuple]]:
    return [[(ch, seg.style) for seg in strip for ch in seg.text] for strip in strips]


async def test_a_spec_drawn_in_the_worker_is_the_picture_drawn_inline_and_a_stale_one_is_dropped() -> None:
    import threading

    app = Two()
    async with app.run_test(size=(60, 32)) as pilot:
        await pilot.pause()
        inline, worker = app.query_one("#inline", MetricPlot), app.query_one("#worker", MetricPlot)
        assert inline.size == worker.size
        width, height = inline.content_region.size
        run = run_series()
        spec = grad_spec(run, max_norm=1.0)
        inline.set_spec(spec)  # 300 steps: drawn right here
        assert inline.draws == 1 and not inline.drawing
        release = threading.Event()

        def held_build():
            release.wait(30)
            return loss_spec(run)

        worker.set_spec_later(held_build)  # built and drawn in the worker ...
        assert worker.drawing and worker.draws == 0
        worker.set_spec_later(lambda: spec)  # ... but a newer spec comes first: the held one is stale
        await until(pilot, lambda: not worker.drawing, "the newer spec drawn")
        release.set()
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert worker.spec == spec and worker.draws == 1 and worker.points == inline.points > 0
        assert worker._strips is not None and worker._strips_key == (width, height, app.theme)  # reused on screen
        assert cells(worker._strips) == cells(inline._build_strips(width, height))
