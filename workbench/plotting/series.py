"""Plot series: what a run's metrics become before they are drawn (backend-free, no plotext here).

- The run's history is `llm_core.training.events.RunHistory`, the one fold over metrics events (the runs
  list reads runs through it too); `RunSeries` adds reading it from a run folder.
- Down-sampling to about twice the plot width with a min/max per bucket (the "M4"-style idea of keeping
  the extremes, Jugel et al., "M4: A Visualization-Oriented Time Series Data Aggregation", VLDB 2014): a
  100k-step run draws as fast as a 100-step one and a single grad-norm spike stays visible.
- Loss smoothing by a debiased exponential moving average: s_t = w*s_{t-1} + (1-w)*x_t, shown as
  s_t / (1 - w^t), the bias correction of Adam (Kingma & Ba, 2015) so early steps are not pulled to 0.
- Log ticks: values are plotted as log10 and the ticks labelled with the original values, because
  plotext's own log axis mislabels and drops points in textual-plotext.
- A robust ceiling (a multiple of a high quantile) for series whose first steps spike far above the rest.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

from llm_core.training.events import RunHistory


class RunSeries(RunHistory):
    """A run's history for plotting, fed one event at a time (live) or read from a run folder."""

    @classmethod
    def from_run(cls, path: str | Path) -> "RunSeries":
        from llm_core.training import read_metrics

        return cls.from_events(read_metrics(path), Path(path).name)


# --- Pure data transforms ---------------------------------------------------------------------------
def downsample(xs: Sequence[float], ys: Sequence[float], max_points: int) -> tuple[list[float], list[float]]:
    """At most `max_points` points: the series is cut into max_points // 2 equal buckets (by index) and
    each bucket keeps its minimum and its maximum, in their original order."""
    n = len(xs)
    if n <= max_points:
        return list(xs), list(ys)
    buckets = max(max_points // 2, 1)
    out_x: list[float] = []
    out_y: list[float] = []
    for b in range(buckets):
        lo, hi = b * n // buckets, (b + 1) * n // buckets
        if lo >= hi:
            continue
        chunk = range(lo, hi)
        i_min = min(chunk, key=lambda i: ys[i])
        i_max = max(chunk, key=lambda i: ys[i])
        for i in sorted({i_min, i_max}):
            out_x.append(xs[i])
            out_y.append(ys[i])
    return out_x, out_y


def ema(values: Sequence[float], weight: float) -> list[float]:
    """Debiased exponential moving average with smoothing `weight` in [0, 1) (0 = no smoothing)."""
    if not 0.0 <= weight < 1.0:
        raise ValueError(f"smoothing weight must be in [0, 1), got {weight!r}")
    out, s = [], 0.0
    for t, x in enumerate(values, start=1):
        s = weight * s + (1.0 - weight) * x
        out.append(s / (1.0 - weight**t))
    return out


def log_ticks(lo: float, hi: float) -> tuple[list[float], list[str]]:
    """Tick positions (in log10 space) and labels (original values) for a log axis spanning [lo, hi]
    given in log10 space: powers of ten, plus 2x and 5x when the range is under two decades."""
    if hi < lo:
        lo, hi = hi, lo
    mantissas = (1, 2, 5) if hi - lo < 2 else (1,)
    ticks = []
    for k in range(math.floor(lo), math.ceil(hi) + 1):
        for m in mantissas:
            t = math.log10(m) + k
            if lo - 1e-9 <= t <= hi + 1e-9:
                ticks.append(t)
    if len(ticks) < 2:  # a narrow range: evenly spaced ticks labelled with their values
        ticks = [lo + (hi - lo) * i / 4 for i in range(5)] if hi > lo else [lo]
    return ticks, [f"{10**t:.3g}" for t in ticks]


def robust_ceiling(values: Sequence[float], quantile: float = 0.95, factor: float = 2.0,
                   min_points: int = 20) -> float | None:
    """`factor` x the `quantile` of the finite values when the largest lies above that, else None (the
    series has no outliers worth clipping, or too few points to tell)."""
    finite = sorted(v for v in values if math.isfinite(v))
    if len(finite) < min_points:
        return None
    ceiling = factor * finite[min(int(quantile * len(finite)), len(finite) - 1)]
    return ceiling if finite[-1] > ceiling > 0 else None


def planned_lr(config: Any) -> list[float]:
    """The planned schedule of a TrainConfig (or its dict); [] when the dict is not a valid config."""
    from llm_core.training import TrainConfig, planned_schedule

    if isinstance(config, dict):
        try:
            config = TrainConfig.from_dict(config)
        except Exception:  # an old or foreign config: no plan to draw, the done steps still are
            return []
    return planned_schedule(config)
