"""Nothing lost under signals, crashes, concurrent use and corrupt files (issue 17).

Signals and locks are tested in real subprocesses (a lock held by this process would not refuse it, and a
signal must reach the CLI's own handlers); checkpoint damage and disk-full are injected in-process.
"""
from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from llm_core.errors import ConfigError, DataError, DiskFullError
from llm_core.training import Trainer, latest_checkpoint, list_runs, read_metrics
from llm_core.training import checkpoint as ckpt
from llm_core.training.lock import RunLockedError
from training_helpers import tiny_config

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="flock and POSIX signals")

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}  # this checkout's code, not the installed one

# Trains a run and blocks inside its first step event (the lock held, nothing checkpointed) until killed.
HOLD = textwrap.dedent("""
    import sys
    from llm_core.training import TrainConfig, Trainer
    trainer = Trainer(TrainConfig.from_file(sys.argv[1]))
    def park(event):
        if event["type"] == "step":
            print("training", flush=True)
            sys.stdin.readline()
    trainer.subscribe(park)
    trainer.run()
""")


def _config_file(tmp_path: Path, **overrides) -> Path:
    path = tmp_path / f"config-{len(list(tmp_path.glob('config-*')))}.json"
    path.write_text(json.dumps(tiny_config(tmp_path, **overrides).to_dict()))
    return path


def _wait_for_step(run_dir: Path, step: int, proc: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(e["type"] == "step" and e["step"] >= step for e in read_metrics(run_dir)):
            return
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    raise AssertionError(f"no step {step} in {run_dir} after {timeout} s")


def _status(root: Path, name: str) -> tuple[str, int | None]:
    info = next(r for r in list_runs(root) if r.name == name)
    return info.status, info.pid


def test_one_writer_then_a_killed_run_resumes_from_step_0(tmp_path) -> None:
    cfg = _config_file(tmp_path, name="x", max_steps=8, checkpoint_every=4)
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(cfg)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True, env=ENV, cwd=tmp_path)
    run_dir = tmp_path / "runs" / "x"
    try:
        assert proc.stdout.readline().strip() == "training"
        assert _status(tmp_path / "runs", "x") == ("running", proc.pid)  # training elsewhere
        with pytest.raises(RunLockedError) as same_name:  # a second start with the same name
            Trainer(tiny_config(tmp_path, name="x", seed=8))
        with pytest.raises(RunLockedError) as live_resume:  # a --resume of the live run
            Trainer.resume(run_dir)
        for info in (same_name, live_resume):
            message = str(info.value)
            assert f"PID {proc.pid}" in message and str(run_dir) in message and "\n" not in message
    finally:
        proc.kill()  # kill -9 before its first checkpoint
        proc.wait()
    assert _status(tmp_path / "runs", "x") == ("interrupted", None)  # gone without an end event
    assert not ckpt.list_checkpoints(run_dir)
    resumed = Trainer.resume(run_dir)  # not a dead end: step 0, the saved config
    assert resumed.step == 0 and resumed.config.seed == 7 and resumed.config.max_steps == 8
    assert resumed.run()["reason"] == "finished"
    assert [e["step"] for e in read_metrics(run_dir) if e["type"] == "step"] == list(range(8))
    assert _status(tmp_path / "runs", "x") == ("finished", None)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT], ids=lambda s: s.name)
def test_stop_signals_checkpoint_and_exit_nonzero(tmp_path, sig) -> None:
    cfg = _config_file(tmp_path, name="s", max_steps=100_000, checkpoint_every=100_000, eval_every=100_000)
    proc = subprocess.Popen([sys.executable, "-m", "workbench.cli", "train", "--config", str(cfg),
                             "--estimate-steps", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=ENV, cwd=tmp_path)
    run_dir = tmp_path / "runs" / "s"
    try:
        _wait_for_step(run_dir, 2, proc)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 128 + sig, err
    events = read_metrics(run_dir)
    end = events[-1]
    assert end["type"] == "end" and end["reason"] == "stopped" and end["signal"] == sig.name
    steps_done = max(e["step"] for e in events if e["type"] == "step") + 1
    assert ckpt.checkpoint_step(latest_checkpoint(run_dir)) == steps_done == end["step"]  # no step lost
    assert _status(tmp_path / "runs", "s")[0] == "stopped"


def _trained(tmp_path: Path, **overrides) -> Trainer:
    trainer = Trainer(tiny_config(tmp_path, **{"name": "c", "max_steps": 20, "checkpoint_every": 5, **overrides}))
    assert trainer.run()["reason"] == "finished"
    return trainer


def test_a_corrupt_latest_checkpoint_is_named_moved_aside_and_rewritten(tmp_path) -> None:
    run_dir = _trained(tmp_path).run_dir
    weights = run_dir / "checkpoints" / "step-00000020" / "model.safetensors"
    os.truncate(weights, 1000)
    resumed = Trainer.resume(run_dir, max_steps=22)
    assert resumed.step == 15
    (notice,) = resumed.notices
    assert "step-00000020" in notice and "truncated" in notice and "\n" not in notice
    assert list((run_dir / "checkpoints").glob(".corrupt-step-00000020-*/model.safetensors"))
    resumed.run()
    assert [p.name for p in ckpt.list_checkpoints(run_dir)] == ["step-00000020", "step-00000022"]
    ckpt.read_manifest(run_dir / "checkpoints" / "step-00000020")  # written afresh, verifies
    assert any(e["type"] == "alarm" and e["kind"] == "resume" for e in read_metrics(run_dir))


def test_prune_never_deletes_the_newest_verified_checkpoint(tmp_path) -> None:
    run_dir = _trained(tmp_path, max_steps=15, keep_last=5).run_dir
    newest = run_dir / "checkpoints" / "step-00000015"
    os.truncate(newest / "model.safetensors", 1000)  # its manifest still reads fine
    ckpt.prune_checkpoints(run_dir, keep_last=1)
    # The corrupt one is left for inspection and does not count; the newest good one (10) survives.
    assert [p.name for p in ckpt.list_checkpoints(run_dir)] == ["step-00000010", "step-00000015"]
    assert latest_checkpoint(run_dir).name == "step-00000010"


def test_deleting_goes_through_a_trash_name(tmp_path, monkeypatch) -> None:
    run_dir = _trained(tmp_path, max_steps=10, keep_last=5).run_dir
    monkeypatch.setattr(ckpt.shutil, "rmtree", lambda *a, **k: None)  # a kill right after the rename
    ckpt.prune_checkpoints(run_dir, keep_last=1)
    monkeypatch.undo()
    assert [p.name for p in ckpt.list_checkpoints(run_dir)] == ["step-00000010"]  # no half-deleted step
    assert list((run_dir / "checkpoints").glob(".trash-step-00000005-*"))
    Trainer.resume(run_dir).close()  # the next start clears the trash
    assert not list((run_dir / "checkpoints").glob(".trash-*"))
    assert not list(run_dir.glob(".config.json.tmp-*"))  # config.json rewritten by rename


def test_a_nonfinite_stop_names_a_checkpoint_that_gets_past_it(tmp_path) -> None:
    from test_training_loop import PoisonedObjective

    objective = PoisonedObjective({10})  # step 10's gradient is non-finite from the step-10 weights
    trainer = Trainer(tiny_config(tmp_path, name="n", max_steps=16, checkpoint_every=5), objective=objective)
    objective.trainer = trainer
    trainer.subscribe(lambda e: e["type"] == "step" and e["step"] == 9 and trainer.save_checkpoint())
    end = trainer.run()
    assert "step 10: non-finite loss" in end["message"]
    # step-10 would repeat the same gradient whatever the learning rate: the message names step-5.
    older = trainer.run_dir / "checkpoints" / "step-00000005"
    assert f"latest good checkpoint: step-00000005" in end["message"] and f"--resume {older}" in end["message"]
    resumed = Trainer.resume(older, peak_lr=1e-3, min_lr=1e-4)
    assert resumed.step == 5 and resumed.config.peak_lr == 1e-3
    assert "step-00000010" in resumed.notices[0]  # the abandoned branch is moved aside, not deleted
    assert list((trainer.run_dir / "checkpoints").glob(".superseded-step-00000010-*"))
    assert resumed.run()["reason"] == "finished"  # no poison in this objective: past step 10
    with pytest.raises(ConfigError) as info:
        tiny_config(tmp_path, peak_lr=float("inf"))
    assert info.value.field == "peak_lr" and "finite" in str(info.value)


def test_disk_full_is_one_line_and_keeps_the_previous_checkpoint(tmp_path, monkeypatch) -> None:
    trainer = Trainer(tiny_config(tmp_path, name="d", max_steps=10, checkpoint_every=5))
    real_save = ckpt.torch.save

    def full_disk_after_the_first(obj, path):
        if "step-00000010" in str(path):
            raise OSError(errno.ENOSPC, "No space left on device")
        real_save(obj, path)

    monkeypatch.setattr(ckpt.torch, "save", full_disk_after_the_first)
    end = trainer.run()
    assert end["reason"] == "error" and isinstance(trainer.failure, DiskFullError)
    assert "disk full" in end["message"] and "\n" not in end["message"]
    assert latest_checkpoint(trainer.run_dir).name == "step-00000005"
    assert not list((trainer.run_dir / "checkpoints").glob(".tmp-*"))  # the space is given back
    from workbench import cli

    monkeypatch.setattr(cli, "app", lambda **_: (_ for _ in ()).throw(trainer.failure))
    with pytest.raises(SystemExit) as exit_info:
        cli.main()
    assert exit_info.value.code == 1


def test_unavailable_devices_and_oversized_contexts_are_refused(tmp_path) -> None:
    import torch

    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="'cuda' is not available"):
            Trainer(tiny_config(tmp_path, device="cuda"))
    with pytest.raises(ConfigError, match="must be auto, cpu"):
        Trainer(tiny_config(tmp_path, device="bogus"))
    with pytest.raises(ConfigError) as info:  # the tiny corpus is never even read
        Trainer(tiny_config(tmp_path, name="big", context_length=100_000))
    assert "--force" in str(info.value) and "\n" not in str(info.value)
    assert not (tmp_path / "runs" / "big").exists()  # refused before the run folder exists
    with pytest.raises(DataError, match="shorter than one window"):  # --force gets past the estimate
        Trainer(tiny_config(tmp_path, name="big", context_length=100_000), force=True)
