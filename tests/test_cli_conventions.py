"""CLI conventions (issue 16): --version, shell completion, one checkpoint option, choices listed by --help,
YAML --config files, `workbench config`, and `workbench runs` under a missing folder."""
from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import tomllib
import typing
from importlib import metadata
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from cli_helpers import plain
from llm_core import ConfigError, TrainConfig, WorkbenchError
from llm_core.config import HELP
from llm_core.config_files import read_config_file
from llm_core.engine import MODES
from llm_core.training import STAGES, stage_config
from workbench import cli
from workbench.cli import app
from workbench.commands.dpo import build_dpo_config
from workbench.commands.options import pick_adapter
from workbench.plotting import METRICS

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()
wide = CliRunner(env={"COLUMNS": "400"})  # rich wraps --help at the terminal width; keep choices on one line
CHECKPOINT_COMMANDS = ("chat", "eval", "export", "dpo", "rl", "reward-model", "distill")


def run_cli(*args: str, **env: str) -> subprocess.CompletedProcess:
    """`python -m workbench.cli ARGS` in a fresh process, this checkout first on the path."""
    return subprocess.run([sys.executable, "-m", "workbench.cli", *args], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT), **env})


def command(name: str) -> typer.core.TyperCommand:
    return typer.main.get_command(app).commands[name]


def option(cmd: typer.core.TyperCommand, name: str) -> typer.core.TyperOption:
    return next(p for p in cmd.params if name in p.opts)


# --- --version and completion ----------------------------------------------------------------------


def test_version_prints_the_installed_distribution_version() -> None:
    out = run_cli("--version")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(f"llm-workbench {metadata.version('llm-workbench')} (torch ")
    assert out.stdout.count("\n") == 1


def test_version_falls_back_to_the_checkouts_pyproject() -> None:
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert cli.package_version("no-such-distribution-here") == f"{declared} (checkout)"


def test_show_completion_prints_a_bash_script_for_workbench() -> None:
    # Typer detects the parent shell unless told not to, and then ignores the "bash" argument: under a
    # parent `sh` (nohup sh -c, some CI runners) it prints "Shell sh not supported." and exits 1.
    out = run_cli("--show-completion", "bash", _TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION="1")
    assert out.returncode == 0, out.stderr
    assert "_WORKBENCH_COMPLETE=complete_bash" in out.stdout
    assert "complete -o default -F _workbench_completion workbench" in out.stdout


@pytest.mark.parametrize("line, expected", [
    ("workbench ch", ["chat"]),
    ("workbench chat --mode ", list(MODES)),
    ("workbench config --stage ", list(STAGES)),  # from the stage registry
    ("workbench dpo --adapter ", ["none", "lora", "dora"]),
    ("workbench plot runs/x --metric ", list(METRICS)),
    ("workbench distill --c", ["--checkpoint"]),
])
def test_completion_offers_commands_and_choices(line: str, expected: list[str]) -> None:
    """What the installed bash function does on Tab (in-process: fast): set these variables, read the lines."""
    env = {"_WORKBENCH_COMPLETE": "complete_bash", "COMP_WORDS": line, "COMP_CWORD": str(len(line.split(" ")) - 1)}
    result = runner.invoke(app, [], prog_name="workbench", env=env)
    assert result.exit_code == 0 and result.output.split() == expected


# --- one checkpoint option -------------------------------------------------------------------------


@pytest.mark.parametrize("name", CHECKPOINT_COMMANDS)
def test_every_checkpoint_command_names_it_checkpoint_c(name: str) -> None:
    cmd = command(name)
    ckpt = option(cmd, "--checkpoint")
    assert ckpt.opts == ["--checkpoint", "-c"]
    shown = {o for p in cmd.params if not getattr(p, "hidden", False) for o in p.opts}
    assert not shown & {"--from", "--teacher", "--lora", "--dora"}  # old spellings are not in --help
    help_text = plain(wide.invoke(app, [name, "--help"]).output)
    assert "--checkpoint -c" in help_text and "--from" not in help_text and "--teacher" not in help_text


@pytest.mark.parametrize("args", [["dpo", "--from"], ["dpo", "--from="], ["rl", "--from"], ["distill", "--teacher"],
                                  ["reward-model", "--from"], ["dpo", "--checkpoint"], ["distill", "-c"],
                                  ["dpo", "--lora", "--from"], ["rl", "--dora", "-c"]])
def test_old_checkpoint_spellings_still_parse_as_the_checkpoint(tmp_path, args: list[str]) -> None:
    """The value reaches the checkpoint loader (its one-line error names the folder) for new and old names."""
    missing = tmp_path / "no-such-run"
    argv = args[:-1] + [args[-1] + str(missing)] if args[-1].endswith("=") else args + [str(missing)]
    result = runner.invoke(app, argv + ["--out", str(tmp_path)] if args[0] != "reward-model" else argv)
    assert isinstance(result.exception, WorkbenchError), result.output
    assert str(missing) in str(result.exception) and "\n" not in str(result.exception)


def test_a_misspelt_option_is_still_refused() -> None:
    result = runner.invoke(app, ["dpo", "--frm", "x"])
    assert result.exit_code == 2 and "No such option: --frm" in plain(result.output)


def test_export_takes_checkpoint_and_its_old_positional_form(tmp_path) -> None:
    missing = tmp_path / "nope"
    for argv in (["export", "-c", str(missing), "--hf", "h"], ["export", str(missing), "--hf", "h"]):
        result = runner.invoke(app, argv)
        assert isinstance(result.exception, WorkbenchError) and "no such run folder" in str(result.exception)
    none = runner.invoke(app, ["export", "--hf", "h"])
    assert none.exit_code == 2 and "Invalid value for '--checkpoint' / '-c': missing" in plain(none.output)
    two = runner.invoke(app, ["export", "-c", "a", "b", "--hf", "h"])
    assert two.exit_code == 2 and "extra arguments 'b'" in plain(two.output)


@pytest.mark.parametrize("adapter, lora, dora, expected", [
    ("none", False, False, "none"), ("lora", False, False, "lora"), ("none", True, False, "lora"),
    ("none", False, True, "dora"), ("dora", False, True, "dora"),
    ("lora", False, True, None), ("none", True, True, None),  # two different kinds
])
def test_adapter_choice_and_the_old_lora_dora_flags(adapter, lora, dora, expected) -> None:
    if expected is None:
        with pytest.raises(WorkbenchError, match="exclude each other"):
            pick_adapter(adapter, lora, dora)
    else:
        assert pick_adapter(adapter, lora, dora) == expected


# --- choices ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name, opt, choices", [
    ("chat", "--mode", MODES),
    ("config", "--stage", tuple(STAGES)),
    ("dpo", "--adapter", ("none", "lora", "dora")),
    ("rl", "--adapter", ("none", "lora", "dora")),
    ("distill", "--mode", ("logits", "traces")),
    ("plot", "--metric", METRICS),
])
def test_choices_come_from_their_definitions_and_help_lists_them(name, opt, choices) -> None:
    shown = plain(wide.invoke(app, [name, "--help"]).output)
    assert f"<{'|'.join(choices)}>" in shown or f"<list[{'|'.join(choices)}]>" in shown  # plot: repeatable
    args = [name] + (["runs/x"] if name == "plot" else []) + [opt, "bogus"]
    refused = runner.invoke(app, args)
    listed = ", ".join(repr(c) for c in choices)
    assert refused.exit_code == 2 and f"'bogus' is not one of {listed}" in plain(refused.output)


def test_the_stage_choice_follows_the_registry() -> None:
    """Stage choices are TrainConfig's stage type, which is built from STAGES: no second list to update."""
    assert typing.get_args(typing.get_type_hints(TrainConfig)["stage"]) == tuple(STAGES)


# --- YAML configs ----------------------------------------------------------------------------------


def test_yaml_and_json_configs_load_the_same(tmp_path) -> None:
    keys = {"stage": "sft", "max_steps": 7, "peak_lr": 3e-4, "min_lr": 1e-5, "bf16": False, "name": "y",
            "val_data": None, "adapter_targets": "attn,mlp"}
    (tmp_path / "c.json").write_text(json.dumps(keys))
    # YAML 1.2 floats without a dot (3e-4, 1E-5), YAML booleans and null, a comment.
    yaml_text = ("# a YAML config\nstage: sft\nmax_steps: 7\npeak_lr: 3e-4\nmin_lr: 1E-5\nbf16: false\n"
                 "name: y\nval_data: null\nadapter_targets: attn,mlp\n")
    for name in ("c.yaml", "c.yml", "c.conf"):  # by suffix, or by content
        (tmp_path / name).write_text(yaml_text)
    expected = TrainConfig(**keys)
    for name in ("c.json", "c.yaml", "c.yml", "c.conf"):
        assert TrainConfig.from_file(tmp_path / name) == expected, name
    (tmp_path / "j.conf").write_text(json.dumps(keys))  # JSON content under another suffix
    assert TrainConfig.from_file(tmp_path / "j.conf") == expected


@pytest.mark.parametrize("text, needle", [
    ("max_steps: 7\nbatch_size: 4\n\tpeak_lr: 1\n", "not valid YAML at line 3 column 1"),
    ("max_steps: 7\npeak_lr: [0.1, 0.2\nseed: 3\n", "not valid YAML at line 3"),
    ("max_steps: 7\nbatch_size: 4\nmax_steps: 8\n",
     "at line 3 column 1: key 'max_steps' given twice (first at line 1)"),
    ("seed: !!python/object/apply:os.system ['echo unsafe']\n",  # refused, never run
     "at line 1 column 7: could not determine a constructor"),
    ("- max_steps\n- 7\n", "expected a mapping of TrainConfig keys, got list"),
    ("", "got an empty file"),
    ("max_stepz: 7\n", "unknown key 'max_stepz'"),
    ("max_steps: seven\n", "'seven' is not an integer"),
])
def test_bad_yaml_is_one_line_naming_the_file_and_line(tmp_path, text: str, needle: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        TrainConfig.from_file(path)
    assert str(err.value).startswith(str(path)) and needle in str(err.value) and "\n" not in str(err.value)


def test_train_and_dpo_take_a_yaml_config(tmp_path) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text("max_steps: 7\n  peak_lr: 1\n")
    result = runner.invoke(app, ["train", "--config", str(bad)])
    assert isinstance(result.exception, ConfigError) and f"{bad}: not valid YAML at line 2" in str(result.exception)
    good = tmp_path / "dpo.yaml"
    good.write_text("beta: 0.3\nmax_steps: 12\n")
    cfg = build_dpo_config(str(tmp_path), "arith", None, "lora", None, good, ["max_steps=9"])
    assert (cfg.stage, cfg.beta, cfg.max_steps, cfg.adapter) == ("dpo", 0.3, 9, "lora")  # --set wins over the file
    assert read_config_file(good) == {"beta": 0.3, "max_steps": 12}


# --- workbench config ------------------------------------------------------------------------------


def test_every_trainconfig_field_has_help() -> None:
    missing = [f.name for f in dataclasses.fields(TrainConfig) if not f.metadata.get(HELP)]
    assert not missing, f"add setting(default, help) to: {missing}"


def _rows(output: str) -> dict[str, list[str]]:
    """`workbench config`'s table: key -> [type, value] (plus a "*" marker column when changed)."""
    rows = {}
    for line in output.splitlines()[2:]:
        parts = line.split()
        if parts[1] == "*":
            rows[parts[0]] = ["*", parts[2], parts[3]]
        else:
            rows[parts[0]] = [parts[1], parts[2]]
    return rows


def test_config_lists_every_key_with_type_and_default() -> None:
    result = runner.invoke(app, ["config"])
    assert result.exit_code == 0, result.output
    rows = _rows(result.output)
    assert list(rows) == [f.name for f in dataclasses.fields(TrainConfig)]
    assert rows["max_steps"] == ["int", str(TrainConfig().max_steps)]
    assert rows["schedule"] == ["cosine|linear|constant", "cosine"]
    assert rows["max_norm"][:2] == ["float", "or"] and rows["val_data"][1] == "or"  # "float or none"
    assert rows["stage"] == ["|".join(STAGES), "pretrain"]
    assert "optimizer steps of the run" in result.output  # the help, from the field metadata


@pytest.mark.parametrize("stage, adapter", [("rl", "none"), ("sft", "lora"), ("dpo", "none")])
def test_config_stage_shows_the_recipe_and_marks_what_it_changes(stage: str, adapter: str) -> None:
    result = runner.invoke(app, ["config", "--stage", stage, "--adapter", adapter])
    assert result.exit_code == 0, result.output
    rows = _rows(result.output)
    spec, defaults = STAGES[stage], TrainConfig()
    recipe = {**spec.recipe, "stage": stage, **(spec.adapter_lr if adapter != "none" else {}), "adapter": adapter}
    changed = {k for k, v in recipe.items() if getattr(defaults, k) != v}
    assert {k for k, r in rows.items() if r[0] == "*"} == changed
    assert rows["max_steps"][-1] == str(recipe.get("max_steps", defaults.max_steps))


@pytest.mark.parametrize("fmt", ["yaml", "json"])
@pytest.mark.parametrize("args, expected", [([], TrainConfig()), (["--stage", "dpo", "--adapter", "lora"],
                                                                  stage_config("dpo", adapter="lora"))])
def test_config_writes_a_file_that_train_config_reads_back(tmp_path, fmt, args, expected) -> None:
    result = runner.invoke(app, ["config", "--format", fmt, *args])
    assert result.exit_code == 0, result.output
    path = tmp_path / f"config.{fmt}"
    path.write_text(result.output)
    assert TrainConfig.from_file(path) == expected


def test_set_help_points_to_workbench_config() -> None:
    for name in ("train", "dpo", "rl", "distill"):
        assert "`workbench config` lists every key" in plain(wide.invoke(app, [name, "--help"]).output), name


# --- workbench runs --------------------------------------------------------------------------------


def test_runs_under_a_missing_folder_is_a_one_line_error(tmp_path, monkeypatch, capsys) -> None:
    missing = tmp_path / "no-runs-here"
    result = runner.invoke(app, ["runs", "--root", str(missing)])
    assert isinstance(result.exception, ConfigError) and str(missing) in str(result.exception)
    monkeypatch.setattr(sys, "argv", ["workbench", "runs", "--root", str(missing)])
    with pytest.raises(SystemExit) as exit_:
        cli.main()
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.count("\n") == 1 and err.startswith(f"error: {missing}: no such folder")
    (tmp_path / "empty").mkdir()
    empty = runner.invoke(app, ["runs", "--root", str(tmp_path / "empty")])
    assert empty.exit_code == 0 and "no runs in" in empty.output
