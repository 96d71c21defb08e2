"""Our plot layer: training metrics -> plot series -> plot specs -> plotext (in the TUI through
textual-plotext, or in a bare terminal / a Markdown report through plotext itself).

- `series`: a run's history (`RunSeries`, the core's event fold) and the backend-free transforms
  (down-sampling that keeps extremes, debiased EMA, log ticks, robust ceiling, the planned schedule);
- `specs`: `PlotSpec` / `Series`, one builder per plot (the same plots in the TUI, `workbench plot` and
  reports), and `draw` / `render_text`.
"""
from .series import RunSeries, downsample, ema, log_ticks, planned_lr, robust_ceiling
from .specs import (
    ALERT_COLOR, EXPERT_COLORS, MAIN_COLOR, METRICS, OTHER_COLOR, RAW_COLOR, VAL_COLOR, PlotSpec, Series,
    compare_spec, distill_spec, dpo_spec, draw, frontier_spec, grad_spec, length_spec, loss_spec, lr_spec, moe_spec, render_text,
    reward_spec, spec_for,
)

__all__ = [
    "ALERT_COLOR", "EXPERT_COLORS", "MAIN_COLOR", "METRICS", "OTHER_COLOR", "RAW_COLOR", "VAL_COLOR",
    "PlotSpec", "RunSeries", "Series", "compare_spec", "distill_spec", "downsample", "dpo_spec", "draw", "ema", "frontier_spec",
    "grad_spec",
    "length_spec", "log_ticks", "loss_spec", "lr_spec", "moe_spec", "planned_lr", "render_text", "reward_spec",
    "robust_ceiling", "spec_for",
]
