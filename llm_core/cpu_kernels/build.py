"""Compile the CPU kernels (`bf16_kernels.c`, `decode_kernels.c`) once per machine and load them with ctypes.

The library is built on first use with the machine's C compiler (`$CC`, else `cc`, `gcc` or `clang` on the
PATH), `-O3 -march=native -fopenmp`, into a cache folder keyed by the source, the compiler, the flags and
the CPU (`$LLM_WORKBENCH_CACHE`, else `$XDG_CACHE_HOME/llm-workbench`, else `~/.cache/llm-workbench`;
the system's temporary folder when none of these is writable). It is written under a temporary name and
renamed into place, so two processes building at once never load a half-written file. Where something is
missing (not Linux on x86-64, no AVX-512, torch not on OpenMP, no compiler, a failed build) `load()` says
why in one line and the callers use torch's own ops.
"""
from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch

HERE = Path(__file__).parent
SOURCES = [HERE / "bf16_kernels.c", HERE / "decode_kernels.c"]
HEADERS = [HERE / "simd.h"]
FLAGS = ["-O3", "-march=native", "-fopenmp", "-fPIC", "-shared", "-std=gnu11"]
ABI = 2  # wb_kernels_abi() of the sources this loader binds


@dataclass(frozen=True)
class Built:
    """The outcome of `load()`: the library, or None and why not (one line)."""

    lib: ctypes.CDLL | None
    reason: str  # what was built and how long it took, or why nothing was
    seconds: float = 0.0


def cache_dir() -> Path:
    """Where built libraries are kept (module docstring)."""
    if os.environ.get("LLM_WORKBENCH_CACHE"):
        return Path(os.environ["LLM_WORKBENCH_CACHE"]) / "cpu_kernels"
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "llm-workbench" / "cpu_kernels"


def find_compiler() -> str | None:
    """The C compiler to build with: $CC, else the first of cc, gcc, clang on the PATH."""
    if cc := os.environ.get("CC", "").strip():
        name = cc.split()[0]
        return name if shutil.which(name) else None
    return next((c for c in ("cc", "gcc", "clang") if shutil.which(c)), None)


@functools.cache
def unsupported_reason() -> str | None:
    """Why these kernels cannot run on this machine, or None (asked once a process: every Engine asks)."""
    if sys.platform != "linux" or platform.machine() not in ("x86_64", "AMD64"):
        return f"built for Linux on x86-64 only (this is {sys.platform} on {platform.machine()})"
    if torch.backends.cpu.get_cpu_capability() not in ("AVX512",):
        return f"the CPU lacks AVX-512 (torch reports {torch.backends.cpu.get_cpu_capability()})"
    if "OpenMP" not in torch.__config__.parallel_info():
        return "torch is not built with OpenMP, whose thread team the kernels share"
    return None


def _cpu_flags() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return line
    except OSError:
        pass
    return platform.processor()


def _key(compiler: str) -> str:
    version = subprocess.run([compiler, "--version"], capture_output=True, text=True, timeout=30).stdout
    h = hashlib.sha256()
    sources = b"".join(f.read_bytes() for f in SOURCES + HEADERS)
    for part in (sources, " ".join(FLAGS).encode(), version.encode(), _cpu_flags().encode()):
        h.update(part)
        h.update(b"\0")
    return h.hexdigest()[:16]


def _writable_dir() -> Path:
    for d in (cache_dir(), Path(tempfile.gettempdir()) / f"llm-workbench-{os.getuid()}" / "cpu_kernels"):
        try:
            d.mkdir(parents=True, exist_ok=True)
            if os.access(d, os.W_OK):
                return d
        except OSError:
            continue
    raise OSError(f"no writable folder for the built kernels (tried {cache_dir()} and the temporary folder)")


def _bind(lib: ctypes.CDLL) -> ctypes.CDLL:
    P, I64, INT = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int
    lib.wb_kernels_abi.restype = INT
    lib.wb_kernels_abi.argtypes = []
    lib.wb_cross_entropy_bf16.restype = None
    lib.wb_cross_entropy_bf16.argtypes = [P, P, I64, I64, I64, P, P, P, INT]
    lib.wb_gelu_tanh_bf16.restype = None
    lib.wb_gelu_tanh_bf16.argtypes = [P, P, I64, INT]
    lib.wb_gelu_tanh_backward_bf16.restype = None
    lib.wb_gelu_tanh_backward_bf16.argtypes = [P, P, P, I64, INT]
    lib.wb_row_max_min_f32.restype = None
    lib.wb_row_max_min_f32.argtypes = [P, I64, I64, I64, P, INT]
    lib.wb_temperature_draw_f32.restype = None
    lib.wb_temperature_draw_f32.argtypes = [P, I64, P, I64, I64, P, ctypes.c_float, P, P, P, P, INT]
    lib.wb_one_query_attention_f32.restype = None
    lib.wb_one_query_attention_f32.argtypes = [P, P, P, I64, I64, P, P, I64, I64, I64, P, I64, I64, I64,
                                               ctypes.c_float, P, INT]
    if lib.wb_kernels_abi() != ABI:
        raise OSError(f"abi {lib.wb_kernels_abi()} where this loader binds {ABI}")
    return lib


def load() -> Built:
    """Build (or find already built) and load the kernels; never raises."""
    why = unsupported_reason()
    if why:
        return Built(None, why)
    compiler = find_compiler()
    if compiler is None:
        return Built(None, "no C compiler found (set CC, or install gcc)")
    t0 = time.perf_counter()
    try:
        folder = _writable_dir()
        target = folder / f"cpu_kernels-{_key(compiler)}.so"
        built = not target.exists()
        if built:
            fd, tmp = tempfile.mkstemp(suffix=".so", dir=folder)
            os.close(fd)
            try:
                run = subprocess.run([compiler, *FLAGS, f"-I{HERE}", *map(str, SOURCES), "-o", tmp, "-lm"],
                                     capture_output=True, text=True, timeout=300)
                if run.returncode != 0:
                    first = (run.stderr.strip().splitlines() or ["no message"])[0]
                    return Built(None, f"{compiler} failed on {', '.join(f.name for f in SOURCES)}: {first}")
                os.replace(tmp, target)  # atomic: a concurrent build replaces it with an identical file
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)
        lib = _bind(ctypes.CDLL(str(target)))
    except (OSError, subprocess.SubprocessError) as exc:
        return Built(None, f"could not build or load the kernels ({type(exc).__name__}: {exc})")
    seconds = time.perf_counter() - t0
    verb = f"built with {compiler} in {seconds:.1f} s" if built else "loaded from the cache"
    return Built(lib, f"{verb} ({target})", seconds)
