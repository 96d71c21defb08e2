"""One writer per run folder: the flock is exclusive across processes and released when a holder dies."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest

from llm_core.training.lock import RunLock, RunLockedError, lock_holder

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="flock is POSIX")

HOLD = textwrap.dedent("""
    import sys, time
    from llm_core.training.lock import RunLock
    RunLock(sys.argv[1]).acquire()
    print("held", flush=True)
    time.sleep(600)
""")


def _holder(run_dir):
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(run_dir)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_process_is_refused_with_the_holders_pid(tmp_path) -> None:
    run = tmp_path / "run"
    proc = _holder(run)
    try:
        assert lock_holder(run) == proc.pid
        with pytest.raises(RunLockedError) as info:
            RunLock(run).acquire()
        assert f"PID {proc.pid}" in str(info.value) and str(run) in str(info.value)
        assert "\n" not in str(info.value)
    finally:
        proc.kill()
        proc.wait()


def test_the_kernel_releases_the_lock_of_a_killed_process(tmp_path) -> None:
    run = tmp_path / "run"
    proc = _holder(run)
    os.kill(proc.pid, signal.SIGKILL)  # no chance to clean up
    proc.wait()
    assert lock_holder(run) is None
    with RunLock(run) as lock:
        assert lock.held and lock_holder(run) == os.getpid()  # held by us now
    assert not lock.held


def test_release_then_reacquire_in_one_process(tmp_path) -> None:
    lock = RunLock(tmp_path / "run").acquire()
    lock.release()
    assert RunLock(tmp_path / "run").acquire().held
