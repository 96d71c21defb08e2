"""Our plot layer: training metrics -> plot specs -> plotext (in the TUI through textual-plotext, or in a bare
terminal / a Markdown report through plotext itself).

Everything that decides *what* is drawn lives here and is backend-free: the widgets and the CLI only call
`draw(plt, spec, width, height)` on a plotext-compatible object, so the backend can change.

Three techniques keep the plots honest and cheap:
- Down-sampling to about twice the plot width with a min/max per bucket (the "M4"-style idea of keeping
  the extremes, Jugel et al., "M4: A Visualization-Oriented Time Series Data Aggregation", VLDB 2014): a
  100k-step run draws as fast as a 100-step one and a single grad-norm spike stays visible.
- Loss smoothing by a debiased exponential moving average: s_t = w*s_{t-1} + (1-w)*x_t, shown as
  s_t / (1 - w^t), the bias correction of Adam (Kingma & Ba, 2015) so early steps are not pulled to 0.
- Log scale by transforming values (log10) and labelling the ticks with the original values, because
  plotext's own log axis mislabels and drops points in textual-plotext.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

# Colours that read on both light and dark themes.
RAW_COLOR = "gray"
MAIN_COLOR = "blue"
VAL_COLOR = "orange"
ALERT_COLOR = "red"
OTHER_COLOR = "green"
EXPERT_COLORS = ("blue", "orange", "green", "magenta", "cyan", "red", "yellow", "gray")


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


# --- Plot specs ---------------------------------------------------------------------------------------
@dataclass
class Series:
    label: str
    xs: list[float]
    ys: list[float]
    color: str = MAIN_COLOR
    kind: str = "line"  # line | scatter
    marker: str = "braille"


@dataclass
class PlotSpec:
    title: str
    series: list[Series] = field(default_factory=list)
    xlabel: str = "step"
    hlines: list[tuple[float, str]] = field(default_factory=list)  # (y, colour), e.g. the clipping threshold
    log_y: bool = False
    empty_message: str = "no data yet"

    @property
    def points(self) -> int:
        return sum(len(s.xs) for s in self.series)


def draw(plt: Any, spec: PlotSpec, width: int, height: int) -> int:
    """Draw `spec` on a plotext-compatible object (cleared by the caller); return the points drawn."""
    plt.title(spec.title)
    plt.xlabel(spec.xlabel)
    budget = max(2 * max(width, 10), 4)  # about two points per character column
    drawn, all_y = 0, []
    for s in spec.series:
        pairs = [(x, y) for x, y in zip(s.xs, s.ys) if y is not None and math.isfinite(y)]
        if spec.log_y:
            pairs = [(x, math.log10(y)) for x, y in pairs if y > 0]
        if not pairs:
            continue
        xs, ys = downsample([p[0] for p in pairs], [p[1] for p in pairs], budget)
        all_y.extend(ys)
        drawn += len(xs)
        if s.kind == "scatter":
            plt.scatter(xs, ys, label=s.label, color=s.color, marker=s.marker)
        else:
            plt.plot(xs, ys, label=s.label, color=s.color, marker=s.marker)
    for y, color in spec.hlines:
        y = math.log10(y) if spec.log_y and y > 0 else y
        plt.hline(y, color)
        all_y.append(y)
    if not drawn:
        plt.title(f"{spec.title}: {spec.empty_message}")
        return 0
    # An explicit y-range over every point (threshold included): nothing, early spikes neither, is hidden.
    lo, hi = min(all_y), max(all_y)
    pad = (hi - lo) * 0.05 or abs(hi) * 0.05 or 1.0
    plt.ylim(lo - pad, hi + pad)
    if spec.log_y:
        ticks, labels = log_ticks(lo - pad, hi + pad)
        plt.yticks(ticks, labels)
    return drawn


def render_text(spec: PlotSpec, width: int = 80, height: int = 20, color: bool = True) -> str:
    """The plot as a string (plotext itself, no Textual): for `workbench plot` and reports."""
    import plotext as plt

    plt.clear_figure()
    plt.plotsize(width, height)
    if not color:
        plt.theme("clear")
    draw(plt, spec, width, height)
    text = plt.build()
    return plt.uncolorize(text) if not color else text


# --- Metrics of a run, accumulated from events ---------------------------------------------------------
class RunSeries:
    """The plottable history of one run, fed one event at a time (live) or from a metrics.jsonl."""

    def __init__(self, name: str = "") -> None:
        self.name = name
        self.steps: list[int] = []
        self.tokens: list[int] = []
        self.loss: list[float] = []
        self.lr: list[float] = []
        self.grad_norm: list[float] = []
        self.clipped: list[bool] = []
        self.eval_steps: list[int] = []
        self.val_loss: list[float] = []
        self.reward_margin: list[float] = []
        self.reward_accuracy: list[float] = []
        self.expert_load: list[list[float]] = []
        self.config: dict[str, Any] = {}
        self.total_steps: int | None = None
        self.start_step = 0
        self.device = ""
        self.parameters: int | None = None
        self.trainable_parameters: int | None = None
        self.tokens_per_s = 0.0
        self.elapsed = 0.0
        self.end: dict[str, Any] | None = None
        self.alarms: list[str] = []
        self.checkpoints: list[str] = []
        self.evals: list[dict[str, Any]] = []
        self.samples: list[str] = []
        self.estimated_seconds: float | None = None  # measured before the first step (start event)

    @classmethod
    def from_events(cls, events: Iterable[dict[str, Any]], name: str = "") -> "RunSeries":
        series = cls(name)
        for e in events:
            series.add(e)
        return series

    @classmethod
    def from_run(cls, path: str | Path) -> "RunSeries":
        from llm_core.training import read_metrics

        return cls.from_events(read_metrics(path), Path(path).name)

    def add(self, e: dict[str, Any]) -> None:
        kind = e.get("type")
        if kind == "step":
            self.steps.append(int(e.get("step", len(self.steps))))
            self.tokens.append(int(e.get("tokens") or 0))
            self.loss.append(_num(e.get("loss")))
            self.lr.append(_num(e.get("lr")))
            self.grad_norm.append(_num(e.get("grad_norm")))
            self.clipped.append(bool(e.get("clipped")))
            self.tokens_per_s = _num(e.get("tokens_per_s")) or self.tokens_per_s
            self.elapsed = _num(e.get("elapsed")) or self.elapsed
            if "reward_margin" in e:
                self.reward_margin.append(_num(e.get("reward_margin")))
                self.reward_accuracy.append(_num(e.get("reward_accuracy")))
            if isinstance(e.get("expert_load"), list):
                self.expert_load.append([_num(v) for v in e["expert_load"]])
        elif kind == "eval":
            self.evals.append(e)
            if e.get("val_loss") is not None:
                self.eval_steps.append(int(e.get("step", 0)))
                self.val_loss.append(_num(e.get("val_loss")))
            if e.get("sample"):
                self.samples.append(str(e["sample"]))
        elif kind == "start":
            self.config = dict(e.get("config") or {})
            self.total_steps = e.get("total_steps")
            self.start_step = int(e.get("start_step") or 0)
            self.device = str(e.get("device", ""))
            self.parameters = e.get("parameters")
            self.trainable_parameters = e.get("trainable_parameters")
            remaining = (e.get("estimates") or {}).get("remaining_seconds")
            self.estimated_seconds = float(remaining) if isinstance(remaining, (int, float)) else None
            self.end = None
        elif kind == "end":
            self.end = e
        elif kind == "alarm":
            self.alarms.append(str(e.get("message", e.get("kind", "alarm"))))
        elif kind == "checkpoint":
            self.checkpoints.append(str(e.get("path", e.get("step"))))

    @property
    def last_step(self) -> int | None:
        return self.steps[-1] if self.steps else None

    @property
    def is_dpo(self) -> bool:
        return bool(self.reward_margin) or self.config.get("stage") == "dpo"

    @property
    def is_moe(self) -> bool:
        return bool(self.expert_load) or int(self.config.get("moe_experts") or 0) > 0

    def eta_seconds(self) -> float | None:
        """Remaining time at the average pace of this session's steps (before the first step: the
        estimate measured at the start)."""
        if not self.steps:
            return self.estimated_seconds
        if not self.total_steps or self.elapsed <= 0:
            return None
        done = self.steps[-1] + 1 - self.start_step
        left = self.total_steps - (self.steps[-1] + 1)
        return self.elapsed / done * left if done > 0 else None


def _num(v: Any) -> float:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else float("nan")


def planned_lr(config: Any) -> list[float]:
    """The planned schedule of a TrainConfig (or its dict); [] when the dict is not a valid config."""
    from llm_core.training import TrainConfig, planned_schedule

    if isinstance(config, dict):
        try:
            config = TrainConfig.from_dict(config)
        except Exception:  # an old or foreign config: no plan to draw, the done steps still are
            return []
    return planned_schedule(config)


# --- Spec builders (the same plots in the TUI, `workbench plot` and reports) ---------------------------
def lr_spec(run: RunSeries, plan: Sequence[float] | None = None) -> PlotSpec:
    spec = PlotSpec("learning rate")
    if plan:
        spec.series.append(Series("planned", list(range(len(plan))), list(plan), RAW_COLOR))
    if run.steps:
        spec.series.append(Series("done", list(run.steps), list(run.lr), MAIN_COLOR))
    return spec


def grad_spec(run: RunSeries, max_norm: float | None = None) -> PlotSpec:
    if max_norm is None:
        max_norm = run.config.get("max_norm")
    spec = PlotSpec("grad norm (pre-clip)")
    spec.series.append(Series("norm", list(run.steps), list(run.grad_norm), MAIN_COLOR))
    clipped = [(s, g) for s, g, c in zip(run.steps, run.grad_norm, run.clipped) if c]
    if clipped:
        spec.series.append(Series("clipped", [c[0] for c in clipped], [c[1] for c in clipped], ALERT_COLOR,
                                  kind="scatter", marker="x"))
    if isinstance(max_norm, (int, float)):
        spec.hlines.append((float(max_norm), ALERT_COLOR))
    return spec


def loss_spec(run: RunSeries, smoothing: float = 0.0, log_y: bool = False, x_axis: str = "step") -> PlotSpec:
    xs = list(run.tokens) if x_axis == "tokens" else list(run.steps)
    spec = PlotSpec("loss", xlabel=x_axis, log_y=log_y)
    if smoothing > 0:
        finite = [(x, y) for x, y in zip(xs, run.loss) if math.isfinite(y)]
        spec.series.append(Series("train (raw)", [p[0] for p in finite], [p[1] for p in finite], RAW_COLOR))
        spec.series.append(Series("train (EMA)", [p[0] for p in finite], ema([p[1] for p in finite], smoothing),
                                  MAIN_COLOR))
    else:
        spec.series.append(Series("train", xs, list(run.loss), MAIN_COLOR))
    if run.val_loss:
        vx = list(run.eval_steps)
        if x_axis == "tokens":
            by_step = dict(zip(run.steps, run.tokens))
            vx = [by_step.get(s, 0) for s in run.eval_steps]
        spec.series.append(Series("val", vx, list(run.val_loss), VAL_COLOR, kind="scatter", marker="dot"))
    return spec


def dpo_spec(run: RunSeries) -> PlotSpec:
    spec = PlotSpec("DPO reward margin / accuracy")
    spec.series.append(Series("margin", list(run.steps), list(run.reward_margin), MAIN_COLOR))
    spec.series.append(Series("accuracy", list(run.steps), list(run.reward_accuracy), OTHER_COLOR))
    return spec


def moe_spec(run: RunSeries) -> PlotSpec:
    spec = PlotSpec("expert load (fraction of tokens)")
    if run.expert_load:
        steps = run.steps[-len(run.expert_load):]
        for e in range(len(run.expert_load[-1])):
            ys = [load[e] if e < len(load) else float("nan") for load in run.expert_load]
            spec.series.append(Series(f"e{e}", steps, ys, EXPERT_COLORS[e % len(EXPERT_COLORS)]))
    return spec


def compare_spec(a: RunSeries, b: RunSeries, smoothing: float = 0.0, log_y: bool = False) -> PlotSpec:
    spec = PlotSpec(f"loss: {a.name} vs {b.name}", log_y=log_y)
    for run, color in ((a, MAIN_COLOR), (b, VAL_COLOR)):
        ys = ema(run.loss, smoothing) if smoothing > 0 and all(map(math.isfinite, run.loss)) else list(run.loss)
        spec.series.append(Series(run.name or "run", list(run.steps), ys, color))
    return spec


METRICS = ("loss", "lr", "grad_norm", "dpo", "moe")


def spec_for(metric: str, run: RunSeries, smoothing: float = 0.0, log_y: bool = False) -> PlotSpec:
    """One named plot of a run (the `--metric` values of `workbench plot`)."""
    if metric == "loss":
        return loss_spec(run, smoothing, log_y)
    if metric == "lr":
        return lr_spec(run, planned_lr(run.config) if run.config else None)
    if metric == "grad_norm":
        return grad_spec(run)
    if metric == "dpo":
        return dpo_spec(run)
    if metric == "moe":
        return moe_spec(run)
    raise ValueError(f"metric: must be one of {', '.join(METRICS)}, got {metric!r}")
