"""Plot specs: what each plot of a run shows, and drawing a spec with plotext.

Everything that decides *what* is drawn lives here and in `series.py` and is backend-free: the widgets and
the CLI only call `draw(plt, spec, width, height)` on a plotext-compatible object (textual-plotext in the
TUI, plotext itself in a bare terminal or a Markdown report), so the backend can change.

Non-negative quantities (learning rate, gradient norm, loss, expert load) never draw their y-axis below 0;
the gradient-norm view is clipped at a robust ceiling when its first steps spike, the points above it
marked on the ceiling and labelled with the true maximum.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

from .series import RunSeries, downsample, ema, log_ticks, planned_lr, robust_ceiling

# Colours that read on both light and dark themes.
RAW_COLOR = "gray"
MAIN_COLOR = "blue"
VAL_COLOR = "orange"
ALERT_COLOR = "red"
OTHER_COLOR = "green"
EXPERT_COLORS = ("blue", "orange", "green", "magenta", "cyan", "red", "yellow", "gray")


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
    nonnegative: bool = False  # the quantity is never below 0: so is the y-axis (without log scale)

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
    # The padding must not invent negative learning rates or losses: clamp at 0 what cannot be below it.
    bottom = max(lo - pad, 0.0) if spec.nonnegative and not spec.log_y and lo >= 0 else lo - pad
    plt.ylim(bottom, hi + pad)
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


# --- Spec builders (the same plots in the TUI, `workbench plot` and reports) ---------------------------
def lr_spec(run: RunSeries, plan: Sequence[float] | None = None) -> PlotSpec:
    spec = PlotSpec("learning rate", nonnegative=True)
    if plan:
        spec.series.append(Series("planned", list(range(len(plan))), list(plan), RAW_COLOR))
    if run.steps:
        spec.series.append(Series("done", list(run.steps), list(run.lr), MAIN_COLOR))
    return spec


def grad_spec(run: RunSeries, max_norm: float | None = None, robust: bool = True) -> PlotSpec:
    """Pre-clip gradient norm, clipped steps marked x, the clipping threshold as a line. With `robust`, a
    first-steps spike (40 where the rest is about 1) no longer flattens the curve: values above a robust
    ceiling (`series.robust_ceiling`) are drawn on it, and marked there with the true maximum in the label."""
    if max_norm is None:
        max_norm = run.config.get("max_norm")
    spec = PlotSpec("grad norm (pre-clip)", nonnegative=True)
    norms = list(run.grad_norm)
    ceiling = robust_ceiling(norms) if robust else None
    if ceiling is not None and isinstance(max_norm, (int, float)):
        ceiling = max(ceiling, 1.1 * float(max_norm))  # the threshold line stays in view
    shown = norms if ceiling is None else [min(g, ceiling) for g in norms]
    spec.series.append(Series("norm", list(run.steps), shown, MAIN_COLOR))
    clipped = [(s, g) for s, g, c in zip(run.steps, shown, run.clipped) if c]
    if clipped:
        spec.series.append(Series("clipped", [c[0] for c in clipped], [c[1] for c in clipped], ALERT_COLOR,
                                  kind="scatter", marker="x"))
    if ceiling is not None:
        above = [s for s, g in zip(run.steps, norms) if math.isfinite(g) and g > ceiling]
        peak = max(g for g in norms if math.isfinite(g))
        spec.series.append(Series(f"above {ceiling:.3g} (max {peak:.3g})", above, [ceiling] * len(above),
                                  ALERT_COLOR, kind="scatter", marker="^"))
    if isinstance(max_norm, (int, float)):
        spec.hlines.append((float(max_norm), ALERT_COLOR))
    return spec


def loss_spec(run: RunSeries, smoothing: float = 0.0, log_y: bool = False, x_axis: str = "step") -> PlotSpec:
    xs = list(run.tokens) if x_axis == "tokens" else list(run.steps)
    spec = PlotSpec("loss", xlabel=x_axis, log_y=log_y, nonnegative=True)
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


def reward_spec(run: RunSeries) -> PlotSpec:
    """RL: mean reward, accuracy of the samples, the share of groups with no signal, and the KL."""
    spec = PlotSpec("RL reward / accuracy / no-signal groups / KL", nonnegative=True)
    for key, label, color in (("reward_mean", "reward", MAIN_COLOR), ("accuracy", "accuracy", OTHER_COLOR),
                              ("zero_std_fraction", "no signal", RAW_COLOR), ("kl", "kl", VAL_COLOR)):
        spec.series.append(Series(label, list(run.rl_steps), list(run.rl[key]), color))
    return spec


def distill_spec(run: RunSeries) -> PlotSpec:
    """Distillation: the two terms of the loss, T^2 * KL to the teacher (KD) and cross-entropy with the labels."""
    spec = PlotSpec("distillation: KD term (T^2 KL) / CE term", nonnegative=True)
    spec.series.append(Series("kd", list(run.distill_steps), list(run.kd_loss), MAIN_COLOR))
    spec.series.append(Series("ce", list(run.distill_steps), list(run.ce_loss), OTHER_COLOR))
    return spec


def length_spec(run: RunSeries) -> PlotSpec:
    """RL: mean completion length, and the share of completions worked step by step (x100)."""
    spec = PlotSpec("RL completion length (tokens) / step-by-step %", nonnegative=True)
    spec.series.append(Series("length", list(run.rl_steps), list(run.rl["completion_length"]), MAIN_COLOR))
    spec.series.append(Series("step-by-step %", list(run.rl_steps),
                              [100 * v for v in run.rl["step_by_step_share"]], OTHER_COLOR))
    return spec


def moe_spec(run: RunSeries) -> PlotSpec:
    spec = PlotSpec("expert load (fraction of tokens)", nonnegative=True)
    if run.expert_load:
        steps = run.steps[-len(run.expert_load):]
        for e in range(len(run.expert_load[-1])):
            ys = [load[e] if e < len(load) else float("nan") for load in run.expert_load]
            spec.series.append(Series(f"e{e}", steps, ys, EXPERT_COLORS[e % len(EXPERT_COLORS)]))
    return spec


def compare_spec(a: RunSeries, b: RunSeries, smoothing: float = 0.0, log_y: bool = False) -> PlotSpec:
    spec = PlotSpec(f"loss: {a.name} vs {b.name}", log_y=log_y, nonnegative=True)
    for run, color in ((a, MAIN_COLOR), (b, VAL_COLOR)):
        ys = ema(run.loss, smoothing) if smoothing > 0 and all(map(math.isfinite, run.loss)) else list(run.loss)
        spec.series.append(Series(run.name or "run", list(run.steps), ys, color))
    return spec


def frontier_spec(rows: Sequence[dict[str, Any]]) -> PlotSpec:
    """Accuracy against tokens per question (log10 x: the methods span 100x in cost) from the rows of
    `llm_core.search.frontier` (as saved by `workbench eval --search`): one line per vote temperature, one
    for beam search, best-of-N and the weighted vote at the best vote temperature, greedy CoT a point."""
    spec = PlotSpec("accuracy vs tokens per question", xlabel="log10 tokens / question", nonnegative=True,
                    empty_message="no search rows")

    def line(label: str, picked: list[dict[str, Any]], color: str, kind: str = "line") -> None:
        picked = sorted((r for r in picked if r["tokens_per_question"] > 0), key=lambda r: r["tokens_per_question"])
        if picked:
            spec.series.append(Series(label, [math.log10(r["tokens_per_question"]) for r in picked],
                                      [100 * r["accuracy"] for r in picked], color, kind))

    votes = [r for r in rows if r["method"] == "vote"]
    temps = sorted({r["temperature"] for r in votes})
    best = max(votes, key=lambda r: (r["n"], r["accuracy"]))["temperature"] if votes else None
    for i, t in enumerate(temps):
        line(f"vote T={t:g}", [r for r in votes if r["temperature"] == t], EXPERT_COLORS[i % len(EXPERT_COLORS)])
    line("beam", [r for r in rows if r["method"] == "beam"], ALERT_COLOR)
    scorers = sorted({r.get("scorer") or "verifier" for r in rows if r["method"] == "best-of-n"})
    palette = iter(("magenta", "cyan", "bright_magenta", "bright_cyan", "white", "bright_white"))
    for scorer in scorers:  # one pair of lines per scorer (old files have no scorer field: the verifier)
        tag = "" if scorers == ["verifier"] else f" {'RM' if scorer.startswith('model:') else scorer}"
        for method in ("best-of-n", "weighted-vote"):
            line(f"{method}{tag} T={best:g}" if best is not None else f"{method}{tag}",
                 [r for r in rows if r["method"] == method and r["temperature"] == best
                  and (r.get("scorer") or "verifier") == scorer], next(palette, "white"))
    line("greedy CoT", [r for r in rows if r["method"] == "cot"], RAW_COLOR, "scatter")
    return spec


METRICS = ("loss", "lr", "grad_norm", "dpo", "moe", "reward", "length", "distill")


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
    if metric == "reward":
        return reward_spec(run)
    if metric == "length":
        return length_spec(run)
    if metric == "distill":
        return distill_spec(run)
    raise ValueError(f"metric: must be one of {', '.join(METRICS)}, got {metric!r}")
