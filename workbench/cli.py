"""The `workbench` command line: `workbench` alone opens the TUI; sub-commands run headless.

`workbench --version` prints the installed version; `--install-completion` / `--show-completion` are
typer's shell completion (bash, zsh, fish, PowerShell), which completes sub-commands, options and choices.
"""
from __future__ import annotations

import importlib
import sys
from importlib import metadata
from pathlib import Path

import typer

from llm_core.errors import WorkbenchError

app = typer.Typer(
    name="workbench",
    help="Train, finetune and chat with GPT-style models from the terminal.",
    no_args_is_help=False,
    add_completion=True,
    pretty_exceptions_enable=False,
)
PROG_NAME = "workbench"  # also under `python -m workbench.cli`: usage lines and the completion variable
DISTRIBUTION = "llm-workbench"

# Each module in workbench/commands registers its own sub-commands.
COMMAND_MODULES = [
    "data",
    "tokenizer",
    "chat",
    "eval",
    "train",
    "config",
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


def package_version(distribution: str = DISTRIBUTION) -> str:
    """The installed version; in a checkout that was never installed, the version in its pyproject.toml."""
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        import tomllib

        pyproject = Path(__file__).resolve().parents[1] / "pyproject.toml"
        try:
            return str(tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]["version"]) + " (checkout)"
        except (OSError, KeyError, tomllib.TOMLDecodeError):
            return "unknown (not installed, no pyproject.toml)"


def _show_version(value: bool) -> None:
    if value:
        try:
            torch = f"torch {metadata.version('torch')}, "
        except metadata.PackageNotFoundError:
            torch = ""
        typer.echo(f"{DISTRIBUTION} {package_version()} ({torch}Python {sys.version.split()[0]})")
        raise typer.Exit()


@app.callback(invoke_without_command=True)
def _root(
    ctx: typer.Context,
    version: bool = typer.Option(False, "--version", callback=_show_version, is_eager=True,
                                 help="Print the version and exit."),
) -> None:
    """With no sub-command, open the TUI on the embedded default experiment."""
    if ctx.invoked_subcommand is None:
        from workbench.tui.app import make_app

        make_app().run()  # (it keeps freed memory in the process before any worker thread exists)


def main() -> None:
    """Console entry point: user errors print one line, not a traceback."""
    try:
        app(prog_name=PROG_NAME)
    except WorkbenchError as exc:
        typer.secho(f"error: {exc}", fg="red", err=True)
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    main()
