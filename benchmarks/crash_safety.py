"""Crash safety of the trainer: random kill -9, SIGTERM and concurrent-start trials on a tiny run.

    python benchmarks/crash_safety.py            # N = 20 trials of each kind
    python benchmarks/crash_safety.py --n 5 --seed 3

Each trial is a real process killed or signalled from outside, as an operator, a scheduler (`docker stop`)
or a second terminal would. Workers are forked from this process after torch is imported, so a trial
costs a tiny run rather than an interpreter start; this process itself never runs a torch op (forking after
one could leave the children with a dead thread pool).
- kill -9: at a random step, or (every other trial) inside a checkpoint write: the worker's fsyncs are
  slowed a little and the kill lands while a `.tmp-` folder exists.
- SIGTERM: at a random step, to a worker running the CLI's `run_to_end` (the handlers `workbench train`,
  `dpo` and `rl` install).
- concurrent start: two workers start the same named run at the same instant, with different seeds.
After each kill the run is checked (its newest checkpoint folder verifies and loads; `list_runs` does not
say "running"), resumed to the end in a new process and compared with an uninterrupted run: the weights
must be equal bit for bit. Reported per kind: unloadable latest checkpoints, failed resumes (an error or
different weights), steps lost beyond the last checkpoint (total; SIGTERM must lose none), runs left
"running", and double writers (two processes that both trained into one folder).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing as mp
import os
import random
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from llm_core.errors import WorkbenchError  # noqa: E402
from llm_core.training import TrainConfig, list_runs, read_metrics  # noqa: E402
from llm_core.training import checkpoint as ckpt  # noqa: E402
from training_helpers import tiny_config  # noqa: E402

MAX_STEPS = 20
CHECKPOINT_EVERY = 5
FORK = mp.get_context("fork")


def _config(root: Path, name: str, **overrides: Any) -> TrainConfig:
    return tiny_config(root, name=name, max_steps=MAX_STEPS, checkpoint_every=CHECKPOINT_EVERY, keep_last=2,
                       eval_every=10, **overrides)


def _weights_digest(model: Any) -> str:
    h = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        h.update(name.encode())
        h.update(tensor.detach().contiguous().numpy().tobytes())
    return h.hexdigest()


# --- Workers (forked children) ----------------------------------------------------------------------
def _train(root: Path, name: str, slow_fsync: bool, via_cli: bool, seed: int = 7) -> None:
    import torch

    from llm_core.training import Trainer

    torch.set_num_threads(1)
    if slow_fsync:  # widen the checkpoint write so that a kill can land inside it
        real = ckpt._fsync_file
        ckpt._fsync_file = lambda path: (time.sleep(0.02), real(path))[1]
    trainer = Trainer(_config(root, name, seed=seed))
    if not via_cli:
        trainer.run()
        os._exit(0)
    import typer
    from rich.console import Console

    from workbench.commands.train import run_to_end

    try:
        run_to_end(Console(file=open(os.devnull, "w")), trainer)
    except typer.Exit as exc:
        os._exit(exc.exit_code)
    os._exit(0)


def _start(root: Path, name: str, seed: int, go: Any) -> None:
    """Wait for `go`, then start the run; write trained / refused to `<name>-<seed>.txt`."""
    import torch

    from llm_core.training import Trainer

    torch.set_num_threads(1)
    go.wait()
    outcome = root / f"{name}-{seed}.txt"
    try:
        trainer = Trainer(_config(root, name, seed=seed))
    except WorkbenchError:  # RunLockedError, or "already exists" when the other one has finished
        outcome.write_text("refused")
        os._exit(0)
    trainer.run()
    outcome.write_text("trained")
    os._exit(0)


def _check_and_resume(run_dir: Path, out: Path) -> None:
    """Load the newest checkpoint folder, then resume to the end; write what happened to `out` (JSON)."""
    import torch

    from llm_core.training import Trainer, load_checkpoint

    torch.set_num_threads(1)
    report: dict[str, Any] = {"unloadable": False, "error": None, "digest": None}
    committed = ckpt.list_checkpoints(run_dir)
    if committed:
        try:
            ckpt.read_manifest(committed[-1])
            load_checkpoint(committed[-1])
        except WorkbenchError as exc:
            report["unloadable"] = str(exc)
    try:
        trainer = Trainer.resume(run_dir)
        trainer.run()
        report["digest"] = _weights_digest(trainer.model)
        report["error"] = trainer.error
    except WorkbenchError as exc:
        report["error"] = str(exc)
    out.write_text(json.dumps(report))
    os._exit(0)


def _reference(root: Path, out: Path) -> None:
    import torch

    from llm_core.training import Trainer

    torch.set_num_threads(1)
    trainer = Trainer(_config(root, "reference"))
    trainer.run()
    out.write_text(_weights_digest(trainer.model))
    os._exit(0)


def _fork(target: Any, *args: Any) -> Any:
    proc = FORK.Process(target=target, args=args)
    proc.start()
    return proc


# --- Trials -----------------------------------------------------------------------------------------
def _steps_logged(run_dir: Path) -> int:
    return max((e["step"] + 1 for e in read_metrics(run_dir) if e["type"] == "step"), default=0)


def _wait(predicate: Any, proc: Any, timeout: float = 60.0, poll: float = 0.002) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.is_alive():
        if predicate():
            return True
        time.sleep(poll)
    return False


def _after_stop(root: Path, run_dir: Path, totals: dict[str, int]) -> None:
    latest = ckpt.latest_checkpoint(run_dir)
    totals["steps_lost"] += _steps_logged(run_dir) - (ckpt.checkpoint_step(latest) if latest else 0)
    info = next(r for r in list_runs(run_dir.parent) if r.path == run_dir)
    totals["left_running"] += info.status == "running"
    out = root / f"{run_dir.name}.json"
    _fork(_check_and_resume, run_dir, out).join()
    report = json.loads(out.read_text())
    totals["unloadable"] += bool(report["unloadable"])
    totals["failed_resumes"] += bool(report["error"]) or report["digest"] != totals["_reference"]


def kill_trial(root: Path, i: int, rng: random.Random, totals: dict[str, int]) -> None:
    inside_write = i % 2 == 1
    run_dir = root / "runs" / f"kill-{i}"
    proc = _fork(_train, root, run_dir.name, inside_write, False)
    if inside_write:
        target = rng.randrange(1, MAX_STEPS // CHECKPOINT_EVERY)  # which checkpoint write to hit
        _wait(lambda: any(p.name.startswith(f"{ckpt.TMP_PREFIX}step-{target * CHECKPOINT_EVERY:08d}")
                          for p in (run_dir / ckpt.CHECKPOINTS).glob(".tmp-*")), proc)
        time.sleep(rng.uniform(0.0, 0.06))
    else:
        step = rng.randrange(1, MAX_STEPS - 1)
        _wait(lambda: _steps_logged(run_dir) > step, proc, poll=0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.join()
    _after_stop(root, run_dir, totals)


def sigterm_trial(root: Path, i: int, rng: random.Random, totals: dict[str, int]) -> None:
    run_dir = root / "runs" / f"term-{i}"
    proc = _fork(_train, root, run_dir.name, False, True)
    step = rng.randrange(1, MAX_STEPS - 2)
    _wait(lambda: _steps_logged(run_dir) > step, proc, poll=0.005)
    os.kill(proc.pid, signal.SIGTERM)
    proc.join()
    totals["nonzero_exit"] += proc.exitcode == 128 + signal.SIGTERM
    ends = [e for e in read_metrics(run_dir) if e["type"] == "end"]
    totals["finished_first"] += proc.exitcode == 0 and ends[-1]["reason"] == "finished"  # signal after the last step
    _after_stop(root, run_dir, totals)


def concurrent_trial(root: Path, i: int, rng: random.Random, totals: dict[str, int]) -> None:
    name = f"both-{i}"
    go = FORK.Event()
    procs = [_fork(_start, root, name, seed, go) for seed in (7, 8)]
    time.sleep(rng.uniform(0.05, 0.15))  # both are waiting at the barrier
    go.set()
    for p in procs:
        p.join()
    outcomes = [(root / f"{name}-{seed}.txt").read_text() for seed in (7, 8)]
    run_dir = root / "runs" / name
    steps = [e["step"] for e in read_metrics(run_dir) if e["type"] == "step"]
    trained = outcomes.count("trained")
    totals["double_writers"] += trained != 1 or len(steps) != len(set(steps))
    info = next(r for r in list_runs(run_dir.parent) if r.path == run_dir)
    totals["left_running"] += info.status == "running"
    latest = ckpt.latest_checkpoint(run_dir)
    totals["unloadable"] += latest is None or ckpt.checkpoint_step(latest) != MAX_STEPS


KINDS = {"kill -9": kill_trial, "SIGTERM": sigterm_trial, "concurrent start": concurrent_trial}
COLUMNS = ("unloadable", "failed_resumes", "steps_lost", "left_running", "double_writers")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20, help="Trials of each kind.")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        _fork(_reference, root, root / "reference.txt").join()
        reference = (root / "reference.txt").read_text()
        print(f"{'trials':<18} {'n':>3} " + " ".join(f"{c:>15}" for c in COLUMNS))
        for kind, trial in KINDS.items():
            totals = {c: 0 for c in COLUMNS} | {"_reference": reference, "nonzero_exit": 0, "finished_first": 0}
            for i in range(args.n):
                trial(root, i, rng, totals)
            print(f"{kind:<18} {args.n:>3} " + " ".join(f"{totals[c]:>15}" for c in COLUMNS)
                  + (f"   (exit 143: {totals['nonzero_exit']}, finished before the signal: {totals['finished_first']})"
                     if kind == "SIGTERM" else ""))
    print(f"wall time {time.perf_counter() - started:.0f} s; kill -9 loses the steps since the last checkpoint "
          f"(every {CHECKPOINT_EVERY} steps) by design; every other figure must be 0")


if __name__ == "__main__":
    main()
