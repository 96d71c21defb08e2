"""`workbench config`: every TrainConfig key with its type, default and one-line help: what `--set key=value`
and a `--config` file accept.

    workbench config                                   # the defaults (the default experiment's pretraining)
    workbench config --stage sft --adapter lora        # that stage's recipe; values it changes are marked *
    workbench config --stage dpo --format yaml > dpo.yaml && workbench train --config dpo.yaml

Types are written as `--set` reads them: `int`, `float or none`, `cosine|linear|constant` (one of those).
The help comes from the field metadata of `TrainConfig` (`llm_core.config.setting`), the recipes from
`llm_core.training.stage_config`: nothing is listed twice.
"""
from __future__ import annotations

import json
from typing import Any, Literal, Optional

import typer

from llm_core.config import describe_fields
from llm_core.training import TrainConfig, stage_config

from .options import AdapterKind, Stage

Format = Literal["table", "yaml", "json"]


def show_value(value: Any) -> str:
    """A value as `--set` takes it: none, true / false, "" for the empty string."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if value == "":
        return '""'
    return str(value)


def config_table(values: dict[str, Any], changed: set[str]) -> list[str]:
    fields = describe_fields(TrainConfig)
    shown = [(f.name + (" *" if f.name in changed else ""), f.type, show_value(values[f.name]), f.help)
             for f in fields]
    widths = [max(len(row[i]) for row in shown + [("key", "type", "default", "")]) for i in range(3)]
    head = ("key", "type", "default" if not changed else "value", "help")
    return ["  ".join(c.ljust(w) for c, w in zip(row[:3], widths)) + "  " + row[3] for row in [head, *shown]]


def config_yaml(values: dict[str, Any], title: str) -> str:
    """Every key as a YAML config file (`workbench train --config F` reads it back), its help as a comment."""
    import yaml

    lines = [f"# {title}", "# TrainConfig keys (workbench config lists them); unknown keys are errors."]
    for f in describe_fields(TrainConfig):
        entry = yaml.safe_dump({f.name: values[f.name]}, default_flow_style=False, sort_keys=False, width=10_000)
        lines.append(f"{entry.strip()}  # {f.type}: {f.help}")
    return "\n".join(lines) + "\n"


def config(
    stage: Optional[Stage] = typer.Option(None, "--stage", help="Show this stage's recipe (the values it starts "
                                          "from) instead of the defaults.", show_default=False),
    adapter: AdapterKind = typer.Option("none", "--adapter", help="With LoRA / DoRA adapters: their learning "
                                        "rates for the stage."),
    output: Format = typer.Option("table", "--format", help="table (key, type, default, help), or a YAML / JSON "
                                  "config file of every key to edit and pass to --config."),
) -> None:
    """List every TrainConfig key (what --set and --config take) with its type, default and help."""
    defaults = TrainConfig().to_dict()
    recipe = stage is not None or adapter != "none"
    values = stage_config(stage or "pretrain", adapter=adapter).to_dict() if recipe else defaults
    changed = {k for k, v in values.items() if v != defaults[k]} if recipe else set()
    title = (f"the {stage or 'pretrain'} recipe" + (f" with {adapter} adapters" if adapter != "none" else "")
             if recipe else "the defaults (the default experiment's pretraining recipe)")
    if output == "yaml":
        typer.echo(config_yaml(values, f"workbench config: {title}"), nl=False)
    elif output == "json":
        typer.echo(json.dumps(values, indent=2))
    else:
        typer.echo(f"{len(values)} TrainConfig keys, {title}"
                   + (" (* = changed from the defaults)" if changed else "")
                   + "; set them with --set key=value or a --config file")
        typer.echo("\n".join(config_table(values, changed)))


def register(app: typer.Typer) -> None:
    app.command("config")(config)
