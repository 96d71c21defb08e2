"""Options shared by the sub-commands, so one thing has one spelling everywhere.

- A checkpoint is `--checkpoint/-c` (chat, eval, export, dpo, rl, reward-model, distill). Older spellings
  (`--from`, `--teacher`) keep working as hidden aliases: `renamed(...)` goes into a command's
  `context_settings` and maps the old option name to the new one while typer parses, so `--help`,
  completion and error messages only know the new name.
- Choices are `Literal`s, which typer lists in `--help`, completes in the shell and checks (a wrong value
  is a usage error naming the valid ones): taken from where the values are defined (`TrainConfig`'s field
  types, whose stage type is built from the stage registry), never written out again here.
"""
from __future__ import annotations

import typing
from pathlib import Path
from typing import Any, Optional

import typer

from llm_core.errors import WorkbenchError
from llm_core.training import TrainConfig

_HINTS = typing.get_type_hints(TrainConfig)
Stage = _HINTS["stage"]  # Literal of the registered stages (llm_core.training.stages.STAGES)
AdapterKind = _HINTS["adapter"]  # Literal["none", "lora", "dora"]
DistillMode = _HINTS["distill_mode"]  # Literal["logits", "traces"]

CHECKPOINT_HELP = "Run folder (its latest valid checkpoint) or checkpoint step folder."
SET_HELP = ("Override a config key: --set {example} (repeatable). `workbench config` lists every key with its "
            "type, default and help.")


def checkpoint_option(help: str = CHECKPOINT_HELP, required: bool = True) -> Any:
    """The one checkpoint option: `--checkpoint/-c`."""
    return typer.Option(... if required else None, "--checkpoint", "-c", help=help, show_default=False)


def config_option() -> Any:
    return typer.Option(None, "--config", help="A JSON or YAML file of TrainConfig keys (.json, .yaml / .yml; "
                        "other names by their content). Unknown keys are errors.", show_default=False)


def set_option(example: str = "max_steps=500") -> Any:
    return typer.Option([], "--set", help=SET_HELP.format(example=example), show_default=False)


def renamed(old_to_new: dict[str, str]) -> dict[str, Any]:
    """`context_settings` for a command whose options were renamed: renamed({"from": "checkpoint"}) makes
    `--from X` (and `--from=X`) parse as `--checkpoint X`."""

    def normalize(token: str) -> str:  # the parser passes option names without their dashes (and choice values)
        return old_to_new.get(token, token)

    return {"token_normalize_func": normalize}


def adapter_option(what: str) -> Any:
    return typer.Option("none", "--adapter", help=f"Train LoRA or DoRA adapters ({what}); none = every weight.")


def hidden_flag(name: str) -> Any:
    """A flag kept for old command lines, not shown in --help (e.g. --lora for --adapter lora)."""
    return typer.Option(False, name, hidden=True)


def pick_adapter(adapter: str, lora: bool = False, dora: bool = False) -> str:
    """The adapter kind from `--adapter` and the old `--lora` / `--dora` flags; two different kinds are an error."""
    kinds = {k for k, on in (("lora", lora), ("dora", dora), (adapter, adapter != "none")) if on}
    if len(kinds) > 1:
        raise WorkbenchError(f"--adapter: {' and '.join(sorted(kinds))} exclude each other (choose one)")
    return kinds.pop() if kinds else "none"


def legacy_positional(ctx: typer.Context, value: Optional[Path]) -> Path:
    """The checkpoint of a command whose old form took it as a positional argument (`workbench export RUN`;
    the command has `allow_extra_args`): `--checkpoint`'s value, else that one argument, else a usage error."""
    extra = list(ctx.args)
    if value is not None and not extra:
        return value
    if value is None and len(extra) == 1:
        return Path(extra[0])
    if value is None and not extra:
        raise typer.BadParameter("missing: give the checkpoint as --checkpoint DIR", ctx=ctx,
                                 param_hint="'--checkpoint' / '-c'")
    raise typer.BadParameter(f"one checkpoint expected, got the extra arguments {' '.join(extra)!r}", ctx=ctx,
                             param_hint="'--checkpoint' / '-c'")
