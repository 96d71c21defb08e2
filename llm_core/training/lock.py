"""One writer per run folder: an OS-level lock held for the life of a run.

Two processes training into the same folder interleave their metrics and overwrite each other's
checkpoints; a `--resume` of a run that is still training deletes the live run's in-progress save. So a
run takes an exclusive `flock` on `<run>/.lock` before it writes anything, and keeps it until it ends. The
kernel releases a flock when its process dies, however it dies (kill -9 included), so a crashed run never
leaves a stale lock behind, unlike a PID file. The holder's PID is written into the file for the message
the second writer gets, and for the runs list ("training elsewhere, PID N").

flock is advisory and POSIX-only; where `fcntl` does not exist (Windows) the lock is a no-op, as it is on
file systems that do not support it.
"""
from __future__ import annotations

import errno
import os
from pathlib import Path

from ..errors import ConfigError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

LOCK_NAME = ".lock"


class RunLockedError(ConfigError):
    """Another live process holds the run folder."""

    def __init__(self, run_dir: Path, pid: int | None) -> None:
        who = f"PID {pid}" if pid else "another process"
        super().__init__(f"{run_dir}: is being trained by {who}; wait for it, stop it, or attach to it "
                         "(Runs panel, key a) instead of writing into it twice")
        self.run_dir, self.pid = run_dir, pid


def _read_pid(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


class RunLock:
    """`with RunLock(run_dir):` or `acquire()` / `release()`. Refuses with RunLockedError when held."""

    def __init__(self, run_dir: str | Path) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_NAME
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> "RunLock":
        if self._fd is not None:
            return self
        self.run_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                os.close(fd)
                if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                    raise RunLockedError(self.run_dir, _read_pid(self.path)) from None
                if exc.errno not in (errno.ENOLCK, errno.EOPNOTSUPP):  # no locking here: carry on unlocked
                    raise
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        os.fsync(fd)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            os.ftruncate(fd, 0)  # no PID left behind for a folder nobody trains
        finally:
            os.close(fd)  # closing the descriptor releases the flock

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def lock_holder(run_dir: str | Path) -> int | None:
    """The PID training `run_dir` right now (0 when the holder's PID is unknown), or None when no live
    process holds it. Probes with a shared non-blocking flock, so it never disturbs the holder."""
    path = Path(run_dir) / LOCK_NAME
    if fcntl is None or not path.is_file():
        return None
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return _read_pid(path) or 0
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)
