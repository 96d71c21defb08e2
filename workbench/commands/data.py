"""`workbench data ...`: (re)generate the embedded default experiment's files."""
from __future__ import annotations

from pathlib import Path

import typer

from llm_core.experiment.build import BuildConfig, build_experiment

data_app = typer.Typer(help="Generate the embedded default experiment's data.", no_args_is_help=True)


@data_app.command("generate")
def generate(
    out: Path = typer.Option(..., "--out", help="Folder for the generated files (created if missing)."),
    seed: int = typer.Option(0, "--seed", help="Random seed; the same seed gives byte-identical files."),
    n_pretrain: int = typer.Option(BuildConfig.n_pretrain, "--n-pretrain", help="Documents in pretrain.txt.gz."),
    n_eval: int = typer.Option(BuildConfig.n_eval, "--n-eval", help="Held-out problems in eval.json."),
) -> None:
    """Write pretrain.txt.gz, instructions.json, preferences.json, eval.json, eval_paraphrase.json, tokenizer/
    and MANIFEST.json into --out (the shipped copy inside the package is never overwritten from here:
    train on a generated folder with --set data=DIR/pretrain.txt.gz)."""
    config = BuildConfig(seed=seed, n_pretrain=n_pretrain, n_eval=n_eval)
    paths = build_experiment(out, config)
    for name, path in paths.items():
        size = sum(f.stat().st_size for f in path.iterdir()) if path.is_dir() else path.stat().st_size
        typer.echo(f"{name:>12}: {path} ({size / 1024:.0f} KiB)")


def register(app: typer.Typer) -> None:
    app.add_typer(data_app, name="data")
