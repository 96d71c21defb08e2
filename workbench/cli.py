"""The `workbench` command line: `workbench` alone opens the TUI; sub-commands run headless."""
from __future__ import annotations

import importlib
import sys

import typer

from llm_core.errors import WorkbenchError

app = typer.Typer(
    name="workbench",
    help="Train, finetune and chat with GPT-style models from the terminal.",
    no_args_is_help=False,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# Each module in workbench/commands registers its own sub-commands.
COMMAND_MODULES = [
    "data",
    "tokenizer",
    "chat",
    "eval",
    "train",
    "export",
    "dpo",
    "rl",
    "reward_model",
    "distill",
    "plot",
    "report",
]

for _name in COMMAND_MODULES:
    importlib.import_module(f"workbench.commands.{_name}").register(app)


@app.callback(invoke_without_command=True)
def _root(ctx: typer.Context) -> None:
    """With no sub-command, open the TUI on the embedded default experiment."""
    if ctx.invoked_subcommand is None:
        from workbench.tui.app import make_app

        make_app().run()


def main() -> None:
    """Console entry point: user errors print one line, not a traceback."""
    try:
        app()
    except WorkbenchError as exc:
        typer.secho(f"error: {exc}", fg="red", err=True)
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    main()
