"""Crash-safe checkpoints: atomic step directories with a verified manifest.

A checkpoint is `checkpoints/step-%08d/` (the number of optimizer steps done) holding
- `model.safetensors`: the weights (safetensors: no pickle, tied tensors stored once),
- `trainer_state.pt`: optimizer state, RNG state and data position (tensors and plain values only,
  loaded with `torch.load(weights_only=True)`, which refuses arbitrary objects),
- `manifest.json`: format version, step, config and the SHA-256 of every file, written LAST.
The directory is filled under a `.tmp-` name, every file fsynced, then renamed into place: a crash leaves
either a complete checkpoint or a temporary folder that the next start deletes. The latest checkpoint is
the newest one whose manifest verifies, so a truncated or bit-flipped file is skipped when resuming and
refused, with one line naming the file, when loaded explicitly.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from safetensors import SafetensorError
from safetensors.torch import load_file, save_model

from ..errors import CheckpointError
from ..io import read_json_object

FORMAT_VERSION = 1
CHECKPOINTS = "checkpoints"
MANIFEST = "manifest.json"
MODEL_FILE = "model.safetensors"
STATE_FILE = "trainer_state.pt"
TMP_PREFIX = ".tmp-"


def step_dir_name(step: int) -> str:
    return f"step-{step:08d}"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _fsync_file(path: Path) -> None:
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # some platforms can't open directories
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def weights_are_finite(model: nn.Module) -> bool:
    return all(bool(torch.isfinite(p).all()) for p in model.parameters())


def save_checkpoint(
    run_dir: str | Path,
    step: int,
    model: nn.Module,
    trainer_state: dict[str, Any],
    config: dict[str, Any],
    val_loss: float | None = None,
) -> Path:
    """Write checkpoint `step` atomically and return its directory. Refuses non-finite weights."""
    if not weights_are_finite(model):
        raise CheckpointError(f"step {step}: the model has non-finite weights; refusing to checkpoint it")
    root = Path(run_dir) / CHECKPOINTS
    root.mkdir(parents=True, exist_ok=True)
    final = root / step_dir_name(step)
    tmp = root / f"{TMP_PREFIX}{step_dir_name(step)}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    save_model(model, str(tmp / MODEL_FILE))
    torch.save(trainer_state, tmp / STATE_FILE)
    files = {}
    for name in (MODEL_FILE, STATE_FILE):
        _fsync_file(tmp / name)
        files[name] = {"sha256": _sha256(tmp / name), "bytes": (tmp / name).stat().st_size}
    manifest = {
        "format_version": FORMAT_VERSION,
        "step": step,
        "val_loss": val_loss,
        "created": time.time(),
        "files": files,
        "config": config,
    }
    with open(tmp / MANIFEST, "w") as f:
        json.dump(manifest, f, indent=2)
        f.flush()
        os.fsync(f.fileno())
    _fsync_dir(tmp)
    if final.exists():  # re-saving the same step (e.g. stop right after a periodic save): replace it
        shutil.rmtree(final)
    os.rename(tmp, final)
    _fsync_dir(root)
    return final


def read_manifest(step_dir: str | Path, verify: bool = True) -> dict[str, Any]:
    """The manifest of `step_dir`; with `verify`, every file's size and SHA-256 is checked.

    Raises CheckpointError naming the file and the problem.
    """
    step_dir = Path(step_dir)
    path = step_dir / MANIFEST
    manifest = read_json_object(path, CheckpointError, expected="a checkpoint manifest",
                                missing="missing (incomplete checkpoint)", invalid="corrupt")
    if not isinstance(manifest.get("files"), dict):
        raise CheckpointError(f"{path}: not a checkpoint manifest")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: unsupported format_version {manifest.get('format_version')!r} (expected {FORMAT_VERSION})"
        )
    if not isinstance(manifest.get("step"), int) or not isinstance(manifest.get("config"), dict):
        raise CheckpointError(f"{path}: missing step or config")
    if verify:
        for name, info in manifest["files"].items():
            file = step_dir / name
            if Path(name).name != name:
                raise CheckpointError(f"{path}: invalid file name {name!r}")
            if not file.is_file():
                raise CheckpointError(f"{file}: missing")
            size = file.stat().st_size
            if size != info.get("bytes"):
                raise CheckpointError(f"{file}: truncated or resized ({size} bytes, manifest says {info.get('bytes')})")
            if _sha256(file) != info.get("sha256"):
                raise CheckpointError(f"{file}: SHA-256 mismatch (file is corrupted)")
    return manifest


def checkpoint_step(step_dir: str | Path) -> int:
    """The optimizer step of a step directory named step-XXXXXXXX."""
    return int(Path(step_dir).name[5:])


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    """Committed step directories of a run, oldest first (not verified)."""
    root = Path(run_dir) / CHECKPOINTS
    if not root.is_dir():
        return []
    dirs = [p for p in root.iterdir() if p.is_dir() and p.name.startswith("step-") and p.name[5:].isdigit()]
    return sorted(dirs, key=checkpoint_step)


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The newest checkpoint whose manifest and files verify (None if there is none)."""
    for step_dir in reversed(list_checkpoints(run_dir)):
        try:
            read_manifest(step_dir)
        except CheckpointError:
            continue
        return step_dir
    return None


def clean_temporary(run_dir: str | Path) -> list[Path]:
    """Delete leftover `.tmp-*` folders from an interrupted save; return what was removed."""
    root = Path(run_dir) / CHECKPOINTS
    removed = []
    if root.is_dir():
        for p in root.iterdir():
            if p.name.startswith(TMP_PREFIX):
                shutil.rmtree(p, ignore_errors=True)
                removed.append(p)
    return removed


def prune_checkpoints(run_dir: str | Path, keep_last: int) -> list[Path]:
    """Keep the newest `keep_last` valid checkpoints plus the best by validation loss; delete the rest.

    Called only after a new checkpoint is committed, so the newest valid one is always kept.
    """
    valid: list[tuple[Path, dict]] = []
    for step_dir in list_checkpoints(run_dir):
        try:
            valid.append((step_dir, read_manifest(step_dir, verify=False)))
        except CheckpointError:
            continue  # leave unreadable folders for the user to inspect; they never count as latest
    keep = {p for p, _ in valid[-keep_last:]}
    scored = [(m["val_loss"], p) for p, m in valid if isinstance(m.get("val_loss"), (int, float))]
    if scored:
        keep.add(min(scored, key=lambda t: t[0])[1])
    removed = []
    for p, _ in valid:
        if p not in keep:
            shutil.rmtree(p, ignore_errors=True)
            removed.append(p)
    return removed


def load_weights(model: nn.Module, step_dir: str | Path) -> None:
    """Load `model.safetensors` of `step_dir` into `model`, refusing missing/extra tensors and shape mismatches."""
    file = Path(step_dir) / MODEL_FILE
    try:
        tensors = load_file(str(file))
    except FileNotFoundError:
        raise CheckpointError(f"{file}: missing") from None
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{file}: unreadable ({str(exc).splitlines()[0]})") from None
    expected = model.state_dict()
    for name, tensor in tensors.items():
        if name not in expected:
            raise CheckpointError(f"{file}: unexpected tensor {name!r} (checkpoint does not match the model config)")
        if tuple(tensor.shape) != tuple(expected[name].shape):
            raise CheckpointError(
                f"{file}: tensor {name!r} has shape {tuple(tensor.shape)}, the model expects {tuple(expected[name].shape)}"
            )
    # A tied tensor is stored once under one of its names: a name is missing only if none of its aliases is there.
    by_storage: dict[int, set[str]] = {}
    for name, tensor in expected.items():
        by_storage.setdefault(tensor.data_ptr(), set()).add(name)
    for names in by_storage.values():
        if not names & tensors.keys() and all(expected[n].numel() for n in names):
            raise CheckpointError(f"{file}: tensor {sorted(names)[0]!r} is missing (checkpoint does not match the model)")
    model.load_state_dict(tensors, strict=False)


def load_trainer_state(step_dir: str | Path) -> dict[str, Any]:
    """Optimizer / RNG / data-position state, unpickled with weights_only=True (no arbitrary objects)."""
    file = Path(step_dir) / STATE_FILE
    try:
        return torch.load(file, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{file}: missing") from None
    except Exception as exc:  # torch raises several types for truncated zips / forbidden globals
        raise CheckpointError(f"{file}: unreadable ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from None
