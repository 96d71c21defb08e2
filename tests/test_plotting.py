"""The plot layer: down-sampling keeps extremes, debiased EMA, log ticks, specs; `workbench plot` / `report`."""
from __future__ import annotations

import json
import math

import pytest
from typer.testing import CliRunner

from llm_core import WorkbenchError
from llm_core.training import TrainConfig, lr_at
from tui_helpers import trained_run
from workbench.cli import app
from workbench.plotting import RunSeries, downsample, draw, ema, grad_spec, log_ticks, loss_spec, planned_lr


def test_downsample_bounds_points_and_keeps_a_single_spike() -> None:
    n = 100_000
    xs = list(range(n))
    ys = [1.0 + 0.001 * (i % 7) for i in range(n)]
    ys[54_321] = 50.0  # one grad-norm spike
    ys[77_777] = -3.0
    dx, dy = downsample(xs, ys, 200)
    assert len(dx) <= 200 and max(dy) == 50.0 and min(dy) == -3.0
    assert dx == sorted(dx) and 54_321 in dx
    assert downsample([1, 2], [3.0, 4.0], 200) == ([1, 2], [3.0, 4.0])


def test_ema_is_debiased() -> None:
    values = [4.0, 2.0, 6.0, 1.0]
    w = 0.9
    expected, s = [], 0.0
    for t, x in enumerate(values, start=1):  # s_t = w s_{t-1} + (1-w) x_t, shown as s_t / (1 - w^t)
        s = w * s + (1 - w) * x
        expected.append(s / (1 - w**t))
    assert ema(values, w) == pytest.approx(expected)
    assert ema(values, w)[0] == pytest.approx(4.0)  # no pull towards 0 at the start
    assert ema(values, 0.0) == values
    with pytest.raises(ValueError):
        ema(values, 1.0)


def test_log_ticks_label_original_values() -> None:
    ticks, labels = log_ticks(math.log10(0.2), math.log10(5))  # under two decades: 1, 2, 5 per decade
    assert labels == ["0.2", "0.5", "1", "2", "5"] and ticks == sorted(ticks)
    assert log_ticks(math.log10(0.01), math.log10(50))[1] == ["0.01", "0.1", "1", "10"]  # wide: powers of 10


def test_planned_lr_is_lr_at_and_specs_mark_clipping() -> None:
    config = TrainConfig(max_steps=40, warmup_steps=5, peak_lr=1e-3, min_lr=1e-4)
    assert planned_lr(config.to_dict()) == [lr_at(s, config) for s in range(40)]
    run = RunSeries.from_events([{"type": "start", "config": config.to_dict(), "total_steps": 40}] + [
        {"type": "step", "step": i, "loss": 5.0 - 0.1 * i, "lr": lr_at(i, config), "grad_norm": 2.0 if i == 3 else 0.5,
         "clipped": i == 3, "tokens": 64 * (i + 1)} for i in range(10)])
    spec = grad_spec(run)
    clipped = [s for s in spec.series if s.label == "clipped"]
    assert clipped and clipped[0].xs == [3] and spec.hlines == [(1.0, "red")]


class RecordingPlot:
    """A plotext stand-in that records the y-range it was given."""

    def __getattr__(self, name):
        return lambda *a, **k: setattr(self, name + "_args", a)


def test_y_range_includes_early_points_and_log_scale_transforms() -> None:
    run = RunSeries.from_events([{"type": "step", "step": i, "loss": 100.0 if i == 0 else 1.0 + 0.01 * i,
                                  "lr": 1e-3, "grad_norm": 1.0, "tokens": i} for i in range(50)])
    plt = RecordingPlot()
    assert draw(plt, loss_spec(run), 60, 15) == 50
    lo, hi = plt.ylim_args
    assert lo < 1.0 and hi > 100.0
    plt = RecordingPlot()
    draw(plt, loss_spec(run, smoothing=0.9, log_y=True), 60, 15)
    lo, hi = plt.ylim_args
    assert lo < 0.0 + 0.01 and 2.0 < hi < 2.2  # log10 of 1..100, padded
    assert "100" in plt.yticks_args[1]


def test_plot_and_report_commands_on_a_real_run(tmp_path) -> None:
    run = trained_run(tmp_path, "base")
    runner = CliRunner()
    out = runner.invoke(app, ["plot", str(run), "-m", "loss", "-m", "grad_norm", "--no-color", "--width", "60"])
    assert out.exit_code == 0, out.output
    assert "loss" in out.output and "grad norm (pre-clip)" in out.output
    out = runner.invoke(app, ["report", str(run)])
    assert out.exit_code == 0, out.output
    text = (run / "report.md").read_text()
    for needle in ("# Run report: base", "## Parameters", "| first train |", "## Config", "learning rate"):
        assert needle in text
    params = json.loads((run / "config.json").read_text())
    assert f"| max_steps | {params['max_steps']} |" in text


@pytest.mark.parametrize("args, needle", [(["nope"], "no such run folder"), (["RUN", "--smooth", "1.5"], "--smooth"),
                                          (["BROKEN"], "broken run")])
def test_plot_bad_input_is_one_line_error(tmp_path, args, needle) -> None:
    run = trained_run(tmp_path, "base")
    broken = tmp_path / "broken"
    broken.mkdir()
    args = [str(run) if a == "RUN" else str(broken) if a == "BROKEN" else str(tmp_path / a) if a == "nope" else a
            for a in args]
    out = CliRunner().invoke(app, ["plot", *args])
    assert out.exit_code != 0 and isinstance(out.exception, WorkbenchError)
    assert needle in str(out.exception) and "\n" not in str(out.exception)


def test_eta_is_the_start_estimate_until_steps_give_a_pace() -> None:
    run = RunSeries.from_events([{"type": "start", "total_steps": 100, "estimates": {"remaining_seconds": 360.0}}])
    assert run.eta_seconds() == 360.0  # shown in the status line before the first step
    run.add({"type": "step", "step": 9, "loss": 1.0, "elapsed": 20.0})
    run.start_step = 0
    assert run.eta_seconds() == pytest.approx(20.0 / 10 * 90)  # then the measured pace: 2 s a step, 90 left


def test_non_negative_quantities_never_draw_their_y_axis_below_zero() -> None:
    from workbench.plotting import lr_spec

    config = TrainConfig(max_steps=60, warmup_steps=10, peak_lr=1e-3, min_lr=1e-4)
    run = RunSeries.from_events([{"type": "start", "config": config.to_dict(), "total_steps": 60}] + [
        {"type": "step", "step": i, "loss": 0.05 + 2.0 / (1 + i), "lr": lr_at(i, config),
         "grad_norm": 0.01 + 0.5 / (1 + i), "clipped": False, "tokens": i} for i in range(60)])
    for spec in (lr_spec(run, planned_lr(config)), grad_spec(run), loss_spec(run), loss_spec(run, smoothing=0.9)):
        plt = RecordingPlot()
        draw(plt, spec, 60, 15)
        lo, hi = plt.ylim_args
        assert lo >= 0.0 and hi > 0.0, spec.title  # padding stops at 0: no -0.00015 learning rates
    plt = RecordingPlot()
    draw(plt, loss_spec(run, log_y=True), 60, 15)
    assert plt.ylim_args[0] < 0.0  # on a log axis values below 1 are negative logs: not clamped


def test_grad_norm_view_is_robust_to_the_first_steps_spike_and_still_marks_it() -> None:
    norms = [40.8, 12.0] + [1.0 + 0.05 * (i % 7) for i in range(298)]  # the default run: a spike, then ~1
    run = RunSeries.from_events([{"type": "step", "step": i, "loss": 1.0, "lr": 1e-3, "grad_norm": g,
                                  "clipped": g > 1.0, "tokens": i} for i, g in enumerate(norms)])
    spec = grad_spec(run, max_norm=1.0)
    plt = RecordingPlot()
    draw(plt, spec, 60, 15)
    lo, hi = plt.ylim_args
    assert lo >= 0.0 and hi < 5.0  # the curve around 1 fills the plot instead of the bottom row
    marked = [s for s in spec.series if s.label.startswith("above")]
    assert marked and marked[0].xs == [0, 1] and "max 40.8" in marked[0].label
    assert max(max(s.ys) for s in spec.series) < 5.0
    full = grad_spec(run, max_norm=1.0, robust=False)  # the unclipped view is still there
    assert max(full.series[0].ys) == 40.8 and not any(s.label.startswith("above") for s in full.series)
    calm = RunSeries.from_events([{"type": "step", "step": i, "grad_norm": 1.0 + 0.1 * (i % 5)} for i in range(100)])
    assert not any(s.label.startswith("above") for s in grad_spec(calm).series)  # no spike: nothing clipped


def test_rl_runs_plot_reward_accuracy_kl_and_completion_length() -> None:
    from workbench.plotting import length_spec, reward_spec

    events = [{"type": "start", "config": {"stage": "rl"}, "total_steps": 3}] + [
        {"type": "step", "step": i, "loss": 0.1, "lr": 1e-4, "grad_norm": 1.0, "tokens": i, "reward_mean": 0.5 + i,
         "accuracy": 0.2 * i, "kl": 0.01 * i, "zero_std_fraction": 0.5, "completion_length": 80 + i,
         "step_by_step_share": 0.25 * i} for i in range(3)]
    run = RunSeries.from_events(events)
    assert run.is_rl and run.rl_steps == [0, 1, 2]
    series = {s.label: s.ys for s in reward_spec(run).series}
    assert series["reward"] == [0.5, 1.5, 2.5] and series["accuracy"] == pytest.approx([0.0, 0.2, 0.4])
    assert series["kl"] == pytest.approx([0.0, 0.01, 0.02]) and series["no signal"] == [0.5] * 3
    length = {s.label: s.ys for s in length_spec(run).series}
    assert length["length"] == [80, 81, 82] and length["step-by-step %"] == [0, 25, 50]


def test_distill_runs_plot_the_kd_and_ce_terms() -> None:
    from workbench.plotting import distill_spec, spec_for

    events = [{"type": "step", "step": i, "loss": 1.0, "lr": 1e-3, "grad_norm": 1.0, "tokens": i,
               "kd_loss": 2.0 - 0.5 * i, "ce_loss": 3.0 - i} for i in range(3)]
    run = RunSeries.from_events(events)
    assert run.is_distill and not run.is_rl and run.distill_steps == [0, 1, 2]
    series = {s.label: (s.xs, s.ys) for s in distill_spec(run).series}
    assert series["kd"] == ([0, 1, 2], [2.0, 1.5, 1.0]) and series["ce"] == ([0, 1, 2], [3.0, 2.0, 1.0])
    assert spec_for("distill", run).title == distill_spec(run).title
