"""The benchmark scripts still run: each cheap one end to end at a toy size (a renamed action once left
benchmarks/tui_overhead.py hanging), and a user's error ends an experiment script in one line."""
from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def run(script: str, *args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(BENCHMARKS / script), *args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout)


def test_tui_overhead_runs_its_three_measurements(tmp_path):
    done = run("tui_overhead.py", "--steps", "4", "--rounds", "1", "--renders", "2", "--presses", "1", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    out = done.stdout
    assert "one plot redraw: MetricPlot" in out
    assert "keypress m handled (action ran)" in out and "keypress m redrawn on screen" in out
    assert "TUI attached / headless:" in out


def test_tracker_overhead_times_the_installed_trackers_and_names_the_others(tmp_path):
    done = run("tracker_overhead.py", "--steps", "4", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("tracker"))
    rows = {line.split()[0] for line in lines[header + 1:] if line.strip()}
    assert "csv" in rows
    for name in ("tensorboard", "wandb"):
        installed = importlib.util.find_spec(name) is not None
        assert (name in rows) == installed
        assert (f"skipped: loggers: {name} needs the package" in done.stdout) == (not installed)


def test_an_experiment_script_ends_a_missing_checkpoint_in_one_line(tmp_path):
    done = run("arith_examples.py", "-c", str(tmp_path / "nothing"), cwd=tmp_path, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [f"error: {tmp_path / 'nothing'}: no such run folder or checkpoint"]


def test_screened_head_benchmark_decodes_the_same_tokens_both_ways(tmp_path, gpt2_cache, shared_data):
    done = run("screened_head.py", "--steps", "2", "--rounds", "1", "--new", "4", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "same tokens screened and unscreened: True" in done.stdout
    assert "fp32 logits recomputed a step" in done.stdout and "screen on / off:" in done.stdout
