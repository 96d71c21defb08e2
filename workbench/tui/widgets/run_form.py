"""`RunForm`: the run panel. Stage, data, starting checkpoint, model preset, the technique switches
(LoRA / DoRA / MoE, DPO beta), the RL stage's GRPO fields, the distill stage's teacher (typed, or picked from
the runs that kept a checkpoint), mode, T and alpha, the optimisation knobs and the experiment trackers, each validated inline
through `TrainConfig` (its `__post_init__` is the one source of truth: the form shows its message next to
the field; a tracker whose package is missing too), with the planned learning-rate schedule redrawn as
the fields change.

It owns its keys: ctrl+s asks the app to start the run (a modifier, so it never fires while typing a
value), Esc leaves a field so the panel keys (1-4) apply again.
"""
from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.widgets import Input, Label, Select, Static, Switch

from llm_core.data.prompts import PROMPT_MODES
from llm_core.errors import WorkbenchError
from llm_core.model import PRESETS
from llm_core.training import TrainConfig, planned_schedule, stage_recipe
from llm_core.training.loggers import LOGGERS, require_packages
from llm_core.training.stages import STAGES
from workbench.plotting import PlotSpec, Series, MAIN_COLOR

from .plot import MetricPlot

# (field, label, kind) in display order; kind: int | float | float? (None allowed) | str | str?
NUMBER_FIELDS: list[tuple[str, str, str]] = [
    ("peak_lr", "peak LR", "float"),
    ("warmup_steps", "warmup steps", "int?"),  # empty = warmup_fraction of the steps
    ("min_lr", "min LR", "float"),
    ("max_norm", "clip max norm", "float?"),
    ("max_steps", "steps", "int"),
    ("batch_size", "batch", "int"),
]
TECHNIQUE_FIELDS: list[tuple[str, str, str]] = [
    ("lora_rank", "rank", "int"),
    ("lora_alpha", "alpha", "float"),
    ("moe_experts", "experts", "int"),
    ("moe_top_k", "top-k", "int"),
    ("beta", "DPO beta", "float"),
]
# The RL stage's own fields (GRPO, llm_core.rl): shown while the stage is rl.
RL_FIELDS: list[tuple[str, str, str]] = [
    ("group_size", "group size G", "int"),
    ("reward", "reward", "str"),
    ("kl_beta", "KL beta", "float"),
    ("clip_eps", "clip eps", "float"),
    ("mu", "passes mu", "int"),
    ("rl_prompt", "prompts", "str"),
]
# The distill stage's own fields (llm_core.distill): shown while the stage is distill. The teacher can be
# typed or picked from the runs that kept a checkpoint (the Select below it).
DISTILL_FIELDS: list[tuple[str, str, str]] = [
    ("teacher", "teacher", "str?"),
    ("distill_mode", "mode", "str"),
    ("kd_temperature", "T", "float"),
    ("kd_alpha", "alpha (KD)", "float"),
    ("kd_cache", "teacher cache", "str?"),
]
# Experiment trackers (llm_core.training.loggers): comma-separated names, empty = metrics.jsonl only.
TRACKING_FIELDS: list[tuple[str, str, str]] = [
    ("loggers", "trackers", "list"),
]


def _parse(kind: str, text: str) -> Any:
    text = text.strip()
    if kind == "list":
        return [part.strip() for part in text.split(",") if part.strip()]
    if kind.endswith("?") and text.lower() in ("", "none", "off", "auto"):
        return None
    if kind.startswith("int"):
        return int(text)
    if kind.startswith("float"):
        return float(text)
    return text or None


def _show(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value))
    return "none" if value is None else f"{value:g}" if isinstance(value, float) else str(value)


class RunForm(Vertical):
    """Emits `RunForm.Changed` with the valid config (or None) whenever a field changes, and
    `RunForm.StartRequested` on ctrl+s."""

    BINDINGS = [
        Binding("ctrl+s", "start", "Start run"),
        Binding("escape", "leave_field", show=False, priority=True),
    ]

    class Changed(Message):
        def __init__(self, config: TrainConfig | None, error: str | None) -> None:
            super().__init__()
            self.config = config
            self.error = error

    class StartRequested(Message):
        """ctrl+s: train this configuration (the app refuses an invalid one with the form's reason)."""

    def __init__(self, base: TrainConfig, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.base = base
        self.config: TrainConfig | None = base
        self.error: str | None = None
        self._loading = False

    # --- layout -------------------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        b = self.base
        with VerticalScroll(id="form-scroll"):
            yield Static("Run", classes="section")
            with Horizontal(classes="row"):
                yield Label("stage", classes="label")
                yield Select([(s, s) for s in STAGES], value=b.stage, allow_blank=False, id="f-stage")
            yield from self._text_row("data", "data", b.data, "a file or 'arith'")
            yield from self._text_row("init_from", "start from", b.init_from or "", "checkpoint (empty = fresh)")
            yield from self._text_row("init_adapters", "adapters from", b.init_adapters or "",
                                      "a PEFT adapter folder to continue (LoRA/DoRA on)")
            with Horizontal(classes="row"):
                yield Label("model", classes="label")
                yield Select([(p, p) for p in PRESETS], value=b.model, allow_blank=False, id="f-model")
            yield Static("Techniques", classes="section")
            with Horizontal(classes="row"):
                yield Label("LoRA", classes="label")
                yield Switch(value=b.adapter == "lora", id="f-lora")
                yield Label("DoRA", classes="label short")
                yield Switch(value=b.adapter == "dora", id="f-dora")
                yield Label("MoE", classes="label short")
                yield Switch(value=b.moe_experts > 0, id="f-moe")
            for name, label, _ in TECHNIQUE_FIELDS:
                value = b.moe_experts or 4 if name == "moe_experts" else getattr(b, name)
                yield from self._text_row(name, label, _show(value))
            with Vertical(id="rl-fields"):
                yield Static("RL (GRPO)", classes="section")
                for name, label, _ in RL_FIELDS:
                    yield from self._text_row(name, label, _show(getattr(b, name)),
                                              " | ".join(PROMPT_MODES) if name == "rl_prompt" else "")
            with Vertical(id="distill-fields"):
                yield Static("Distillation", classes="section")
                for name, label, _ in DISTILL_FIELDS:
                    yield from self._text_row(name, label, "" if getattr(b, name) is None else _show(getattr(b, name)),
                                              {"teacher": "a checkpoint (run or step folder)",
                                               "distill_mode": "logits | traces",
                                               "kd_cache": "folder: top-k logits written once, reused"}.get(name, ""))
                with Horizontal(classes="row"):
                    yield Label("pick teacher", classes="label")
                    yield Select([], prompt="runs with a checkpoint", id="f-teacher-pick")
            yield Static("Optimisation", classes="section")
            for name, label, _ in NUMBER_FIELDS:
                yield from self._text_row(name, label, self._field_text(b, name), self._placeholder(b, name))
            yield Static("Tracking", classes="section")
            for name, label, _ in TRACKING_FIELDS:
                yield from self._text_row(name, label, _show(getattr(b, name)),
                                          f"{', '.join(LOGGERS)} (empty: metrics.jsonl only)")
            yield Static("", id="form-error", classes="error", markup=False)  # messages quote values: "[x]"
        yield MetricPlot(id="lr-preview")

    @staticmethod
    def _field_text(config: TrainConfig, name: str) -> str:
        if name == "warmup_steps" and config.warmup_steps is None:
            return ""  # a fraction of the steps, so changing the steps keeps it valid
        return _show(getattr(config, name))

    @staticmethod
    def _placeholder(config: TrainConfig, name: str) -> str:
        return f"auto: {config.warmup_fraction:.1%} of steps" if name == "warmup_steps" else ""

    def _text_row(self, name: str, label: str, value: str, placeholder: str = "") -> ComposeResult:
        with Horizontal(classes="row"):
            yield Label(label, classes="label")
            yield Input(value, placeholder=placeholder, id=f"f-{name}")
            yield Static("", id=f"e-{name}", classes="field-error", markup=False)

    def _show_stage_fields(self, stage: str) -> None:
        self.query_one("#rl-fields").display = stage == "rl"
        self.query_one("#distill-fields").display = stage == "distill"

    def set_teachers(self, runs: list[Any]) -> None:
        """Offer the runs that kept a checkpoint as teachers (newest checkpoint of each)."""
        options = [(f"{r.name} (step {r.steps})", str(r.path)) for r in runs if r.checkpoints and not r.broken]
        self.query_one("#f-teacher-pick", Select).set_options(options)

    def on_mount(self) -> None:
        self._show_stage_fields(self.base.stage)
        self.validate_form()

    # --- reading and validating -----------------------------------------------------------------------
    def values(self) -> tuple[dict[str, Any], dict[str, str]]:
        """(TrainConfig overrides read from the widgets, {field: parse error})."""
        values: dict[str, Any] = {}
        errors: dict[str, str] = {}
        values["stage"] = self.query_one("#f-stage", Select).value
        values["model"] = self.query_one("#f-model", Select).value
        values["data"] = self.query_one("#f-data", Input).value.strip()
        values["init_from"] = self.query_one("#f-init_from", Input).value.strip() or None
        values["init_adapters"] = self.query_one("#f-init_adapters", Input).value.strip() or None
        lora, dora = self.query_one("#f-lora", Switch).value, self.query_one("#f-dora", Switch).value
        values["adapter"] = "dora" if dora else "lora" if lora else "none"
        moe = self.query_one("#f-moe", Switch).value
        for name, _, kind in TECHNIQUE_FIELDS + RL_FIELDS + DISTILL_FIELDS + NUMBER_FIELDS + TRACKING_FIELDS:
            text = self.query_one(f"#f-{name}", Input).value
            try:
                values[name] = _parse(kind, text)
            except ValueError:
                errors[name] = f"not a{'n integer' if kind.startswith('int') else ' number'}: {text!r}"
        if not moe:
            values["moe_experts"] = 0
        return values, errors

    def validate_form(self) -> TrainConfig | None:
        """Validate every field; show each problem next to its field; redraw the LR preview."""
        values, errors = self.values()
        config, message = None, None
        if not errors:
            try:
                config = self.base.with_overrides(**values)
                require_packages(config.loggers)  # a missing tensorboard / wandb shows here, not at ctrl+s
            except WorkbenchError as exc:
                config = None
                message = str(exc)
                field = getattr(exc, "field", None)
                if field and self.query(f"#e-{field}"):
                    errors[field] = message.split(": ", 1)[1]
        for widget in self.query(".field-error"):
            name = widget.id[2:] if widget.id else ""
            widget.update(errors.get(name, ""))
            widget.set_class(name in errors, "shown")
        if errors and message is None:
            message = "; ".join(f"{k}: {v}" for k, v in errors.items())
        self.query_one("#form-error", Static).update(message or "")
        self.config, self.error = config, message
        if config is not None:
            plan = planned_schedule(config)
            self.query_one("#lr-preview", MetricPlot).set_spec(
                PlotSpec("planned learning rate", [Series("lr", list(range(len(plan))), plan, MAIN_COLOR)])
            )
        self.post_message(self.Changed(config, message))
        return config

    # --- keys ---------------------------------------------------------------------------------------
    def action_start(self) -> None:
        self.post_message(self.StartRequested())

    def action_leave_field(self) -> None:
        self.focus_here()

    def focus_here(self) -> None:
        """The form itself (not a field) takes the focus, so typing a digit switches panels."""
        self.screen.set_focus(self.query_one("#form-scroll", VerticalScroll))  # now, not deferred

    def describe(self) -> str:
        """The configuration in a few words, e.g. 'pretrain: tiny on arith, 1500 steps'."""
        c = self.config
        if c is None:
            return f"nothing: the run panel has an error ({self.error})"
        start = f" from {c.init_from}" if c.init_from else ""
        return f"{c.name or c.stage}: {c.model} on {c.data}{start}, {c.max_steps} steps"

    # --- events ---------------------------------------------------------------------------------------
    def on_input_changed(self, event: Input.Changed) -> None:
        if not self._loading:
            self.validate_form()

    def on_switch_changed(self, event: Switch.Changed) -> None:
        if self._loading:
            return
        if event.value and event.switch.id in ("f-lora", "f-dora"):  # LoRA and DoRA exclude each other
            other = "#f-dora" if event.switch.id == "f-lora" else "#f-lora"
            self.query_one(other, Switch).value = False
        self.validate_form()

    def on_select_changed(self, event: Select.Changed) -> None:
        if self._loading:
            return
        if event.select.id == "f-teacher-pick":
            if isinstance(event.value, str):
                self.query_one("#f-teacher", Input).value = event.value  # validates through on_input_changed
            return
        if event.select.id == "f-stage" and isinstance(event.value, str):
            self._show_stage_fields(event.value)
            self.apply_recipe(event.value)
        self.validate_form()

    def apply_recipe(self, stage: str) -> None:
        """Fill the optimisation fields with the stage's recipe (finetuning starts gentler)."""
        lora, dora = self.query_one("#f-lora", Switch).value, self.query_one("#f-dora", Switch).value
        adapter = "dora" if dora else "lora" if lora else "none"
        # The recipe's values as they are: validating them would refuse a stage whose other fields are not
        # filled in yet (distill without a teacher), and the form validates everything right after.
        recipe = stage_recipe(stage, adapter)
        resolved = SimpleNamespace(**{**self.base.to_dict(), **recipe})
        self._loading = True
        try:
            for name, _, _ in NUMBER_FIELDS:
                self.query_one(f"#f-{name}", Input).value = self._field_text(resolved, name)
            self.query_one("#f-beta", Input).value = _show(resolved.beta)
            if "model" in recipe:  # distill: the quarter-size student; other stages keep the user's choice
                self.query_one("#f-model", Select).value = recipe["model"]
        finally:
            self._loading = False

    def set_init_from(self, path: str) -> None:
        self.query_one("#f-init_from", Input).value = path
