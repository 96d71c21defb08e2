"""`workbench report RUN`: a Markdown report card of a run: config, parameter counts, losses, DPO / MoE
summaries, the evaluation table (from `workbench eval`, saved next to the checkpoint) and the plots as text.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Optional

import typer

from workbench.plotting import RunSeries, render_text, spec_for

from .plot import load_series


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "-" if value is None else str(value)


def _finite(values: list[float]) -> list[float]:
    return [v for v in values if isinstance(v, float) and math.isfinite(v)]


def evaluation_tables(run: Path) -> list[dict[str, Any]]:
    """Every evaluation.json written by `workbench eval` into the run's checkpoints, by step."""
    tables = []
    for path in sorted((run / "checkpoints").glob("step-*/evaluation.json")):
        try:
            tables.append(json.loads(path.read_text()))
        except (OSError, json.JSONDecodeError):
            continue  # a half-written or foreign file: the report goes on without it
    return tables


def build_report(run: Path, width: int = 80) -> str:
    s: RunSeries = load_series(run)
    c = s.config
    lines = [f"# Run report: {run.name}", ""]
    status = s.end.get("message") if s.end else "no end event (running, or interrupted)"
    lines += [f"- status: {status}", f"- device: {s.device or '-'}",
              f"- steps logged: {len(s.steps)} of {s.total_steps or c.get('max_steps', '?')}", ""]
    lines += ["## Parameters", "", "| total | trainable | share trainable |", "| --- | --- | --- |"]
    if s.parameters:
        share = (s.trainable_parameters or 0) / s.parameters
        lines.append(f"| {s.parameters:,} | {s.trainable_parameters or 0:,} | {share:.2%} |")
    else:
        lines.append("| - | - | - |")
    lines += ["", "## Losses", "", "| first train | last train | best train | best val | last val |",
              "| --- | --- | --- | --- | --- |"]
    train, val = _finite(s.loss), _finite(s.val_loss)
    lines.append(f"| {_fmt(train[0] if train else None)} | {_fmt(train[-1] if train else None)} | "
                 f"{_fmt(min(train) if train else None)} | {_fmt(min(val) if val else None)} | "
                 f"{_fmt(val[-1] if val else None)} |")
    clipped = sum(s.clipped)
    lines += ["", f"Clipped steps: {clipped} of {len(s.clipped)}."]
    if s.is_dpo and s.reward_accuracy:
        last_eval = next((e for e in reversed(s.evals) if "val_reward_accuracy" in e), {})
        lines += ["", "## DPO", "", f"- beta: {c.get('beta')}", f"- last reward margin: {_fmt(s.reward_margin[-1])}",
                  f"- last train reward accuracy: {_fmt(s.reward_accuracy[-1])}",
                  f"- held-out reward accuracy: {_fmt(last_eval.get('val_reward_accuracy'))}"]
    if s.is_moe and s.expert_load:
        load = ", ".join(f"{v:.2f}" for v in s.expert_load[-1])
        lines += ["", "## Mixture of Experts", "", f"- experts {c.get('moe_experts')}, top-{c.get('moe_top_k')}",
                  f"- last expert load: {load}"]
    if s.alarms:
        lines += ["", "## Alarms", ""] + [f"- {a}" for a in s.alarms]
    for table in evaluation_tables(run):
        lines += ["", f"## Evaluation at step {table.get('step')} ({table.get('problems')} problems, "
                      f"vote temperature {table.get('temperature')})", "",
                  "| method | N | accuracy | tokens/question |", "| --- | --- | --- | --- |"]
        for row in table.get("rows", []):
            lines.append(f"| {row['method']} | {row['n']} | {row['accuracy']:.1%} | {row['tokens_per_question']:.1f} |")
        if table.get("search"):  # `workbench eval --search`: the frontier table and its plot
            from .eval_search import search_lines

            lines += ["", "### Search frontier", ""] + search_lines(table["search"], markdown=True)
    lines += ["", "## Config", "", "| key | value |", "| --- | --- |"]
    lines += [f"| {k} | {_fmt(v)} |" for k, v in c.items() if k != "model_config"]
    metrics = ["loss", "lr", "grad_norm"] + (["dpo"] if s.is_dpo else []) + (["moe"] if s.is_moe else [])
    lines += ["", "## Plots", ""]
    for metric in metrics:
        lines += ["```", render_text(spec_for(metric, s, 0.9 if metric == "loss" else 0.0), width, 16, False), "```", ""]
    return "\n".join(lines)


def report(
    run: Path = typer.Argument(..., help="A run folder (runs/<name>)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Markdown file (default: <run>/report.md)."),
) -> None:
    """Write a Markdown report card of a run."""
    text = build_report(run)
    target = out or run / "report.md"
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(target)
    typer.echo(f"report written: {target}")


def register(app: typer.Typer) -> None:
    app.command("report")(report)
