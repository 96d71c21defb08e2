"""Crash-safe checkpoints: atomic step directories with a verified manifest.

A checkpoint is `checkpoints/step-%08d/` (the number of optimizer steps done) holding
- `model.safetensors`: the weights (safetensors: no pickle, tied tensors stored once),
- `trainer_state.pt`: optimizer state, RNG state and data position (tensors and plain values only,
  loaded with `torch.load(weights_only=True)`, which refuses arbitrary objects),
- `manifest.json`: format version, step, config and the SHA-256 of every file, written LAST.
The directory is filled under a `.tmp-` name, every file fsynced, then renamed into place: a crash leaves
either a complete checkpoint or a temporary folder that the next start deletes. The latest checkpoint is
the newest one whose manifest verifies; a truncated or bit-flipped one is reported (`scan_checkpoints`
says which and why, the trainer warns in one line and moves it aside with `quarantine`) and refused, with
one line naming the file, when loaded explicitly.

Deleting is atomic too: a folder to delete (an old checkpoint being pruned, a step being re-saved) is first
renamed to a `.trash-` name, then removed. A kill half-way through `rmtree` leaves a trash folder that the
next start removes, never a committed step folder with some of its files gone. Pruning fully verifies the
checkpoints it keeps, so a corrupt newer folder can never cost the newest good one.
"""
from __future__ import annotations

import errno
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
from safetensors.torch import load_file, save_file

from ..errors import CheckpointError, DiskFullError
from ..io import fsync_dir as _fsync_dir, read_json_object

FORMAT_VERSION = 1
CHECKPOINTS = "checkpoints"
MANIFEST = "manifest.json"
MODEL_FILE = "model.safetensors"
STATE_FILE = "trainer_state.pt"
TMP_PREFIX = ".tmp-"
TRASH_PREFIX = ".trash-"  # being deleted: removed by the next start
CORRUPT_PREFIX = ".corrupt-"  # failed verification: kept for inspection, never counted, never deleted
SUPERSEDED_PREFIX = ".superseded-"  # newer than the checkpoint a run was resumed from: kept, never counted


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


def weights_are_finite(model: nn.Module) -> bool:
    return all(bool(torch.isfinite(p).all()) for p in model.parameters())


def is_disk_full(exc: BaseException) -> bool:
    """ENOSPC / EDQUOT, raised as OSError by Python and metrics writes, or as RuntimeError by torch.save and
    SafetensorError by safetensors (which only keep the text)."""
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    return "No space left on device" in str(exc) or "Disk quota exceeded" in str(exc)


def discard(path: Path) -> None:
    """Delete a folder atomically: rename it to a trash name (one step a crash cannot split), then remove it."""
    trash = path.with_name(f"{TRASH_PREFIX}{path.name}-{os.getpid()}-{time.monotonic_ns()}")
    os.rename(path, trash)
    shutil.rmtree(trash, ignore_errors=True)


def set_aside(path: Path, prefix: str) -> Path:
    """Rename a step folder out of the checkpoint list (`.corrupt-...` / `.superseded-...`), keeping its files."""
    target = path.with_name(f"{prefix}{path.name}-{time.strftime('%Y%m%d-%H%M%S')}")
    k = 2
    while target.exists():
        target, k = target.with_name(f"{target.name}-{k}"), k + 1
    os.rename(path, target)
    return target


def quarantine(step_dir: Path) -> Path:
    """Move a checkpoint that failed verification aside, so its step is saved afresh when the run gets there."""
    return set_aside(step_dir, CORRUPT_PREFIX)


def save_checkpoint(
    run_dir: str | Path,
    step: int,
    model: nn.Module,
    trainer_state: dict[str, Any],
    config: dict[str, Any],
    val_loss: float | None = None,
) -> Path:
    """Write checkpoint `step` atomically and return its directory. Refuses non-finite weights.

    A failed write (disk full included) removes its temporary folder and leaves every committed checkpoint
    as it was; a full disk raises DiskFullError, anything else CheckpointError, both one line."""
    if not weights_are_finite(model):
        raise CheckpointError(f"step {step}: the model has non-finite weights; refusing to checkpoint it")
    run_dir = Path(run_dir)
    root = run_dir / CHECKPOINTS
    if not root.is_dir():
        root.mkdir(parents=True, exist_ok=True)
        _fsync_dir(run_dir)  # the new checkpoints/ entry itself must survive a power cut
    final = root / step_dir_name(step)
    tmp = root / f"{TMP_PREFIX}{step_dir_name(step)}-{os.getpid()}"
    try:
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir()
        _write_files(tmp, step, model, trainer_state, config, val_loss)
        if final.exists():  # re-saving the same step (e.g. stop right after a periodic save): replace it
            discard(final)
        os.rename(tmp, final)
        _fsync_dir(root)
    except (OSError, RuntimeError, SafetensorError) as exc:
        shutil.rmtree(tmp, ignore_errors=True)  # give the space back; the committed checkpoints are untouched
        why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if is_disk_full(exc):
            raise DiskFullError(f"{final}: disk full while writing the checkpoint ({why}); the earlier "
                                "checkpoints are intact: free some space and --resume") from None
        raise CheckpointError(f"{final}: could not be written ({type(exc).__name__}: {why})") from None
    return final


def _write_files(tmp: Path, step: int, model: nn.Module, trainer_state: dict[str, Any], config: dict[str, Any],
                 val_loss: float | None) -> None:
    save_weights(model, tmp / MODEL_FILE)
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


def save_weights(model: nn.Module, path: Path) -> None:
    """The model's state dict as safetensors, as `safetensors.torch.save_model` writes it: a tied tensor once,
    under the first of its names in sorted order, the others named in the metadata. Written here because
    save_model cannot find the tied pairs of a column-major tensor (GPT's tied embedding,
    `llm_core.embedding`); every tensor is stored contiguous (row-major), so the file is the same."""
    state = model.state_dict()
    names: dict[tuple, list[str]] = {}
    for name, tensor in state.items():  # a tied weight appears once per name, as the same view
        key = (tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tuple(tensor.shape), tensor.stride())
        names.setdefault(key, []).append(name)
    tensors, metadata = {}, {}
    for group in names.values():
        kept, *others = sorted(group)
        tensors[kept] = state[kept].contiguous()
        metadata.update({other: kept for other in others})
    save_file(tensors, str(path), metadata=metadata or None)


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


def scan_checkpoints(run_dir: str | Path) -> tuple[Path | None, list[tuple[Path, str]]]:
    """(the newest checkpoint whose manifest and files verify, [(newer folder that failed, why)])."""
    skipped: list[tuple[Path, str]] = []
    for step_dir in reversed(list_checkpoints(run_dir)):
        try:
            read_manifest(step_dir)
        except CheckpointError as exc:
            skipped.append((step_dir, str(exc)))
            continue
        return step_dir, skipped
    return None, skipped


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The newest checkpoint whose manifest and files verify (None if there is none)."""
    return scan_checkpoints(run_dir)[0]


def clean_temporary(run_dir: str | Path) -> list[Path]:
    """Delete leftover `.tmp-*` folders of an interrupted save and `.trash-*` folders of an interrupted
    delete; return what was removed."""
    root = Path(run_dir) / CHECKPOINTS
    removed = []
    if root.is_dir():
        for p in root.iterdir():
            if p.name.startswith((TMP_PREFIX, TRASH_PREFIX)):
                shutil.rmtree(p, ignore_errors=True)
                removed.append(p)
    return removed


def prune_checkpoints(run_dir: str | Path, keep_last: int) -> list[Path]:
    """Keep the newest `keep_last` checkpoints that fully verify, plus the best verified one by validation
    loss; delete the other readable ones (atomically, see `discard`).

    What is kept is verified (SHA-256 of every file), not trusted from its manifest: a corrupt newer folder
    never counts as one of the kept, so the newest good checkpoint survives. Folders that fail verification
    are never deleted here (they are left for the trainer's warning or the user to inspect)."""
    readable: list[tuple[Path, dict]] = []
    for step_dir in list_checkpoints(run_dir):
        try:
            readable.append((step_dir, read_manifest(step_dir, verify=False)))
        except CheckpointError:
            continue
    verdict: dict[Path, bool] = {}

    def verified(p: Path) -> bool:
        if p not in verdict:
            try:
                read_manifest(p)
                verdict[p] = True
            except CheckpointError:
                verdict[p] = False
        return verdict[p]

    keep: set[Path] = set()
    for p, _ in reversed(readable):  # newest first, until keep_last verified ones are found
        if len(keep) >= keep_last:
            break
        if verified(p):
            keep.add(p)
    scored = sorted((m["val_loss"], checkpoint_step(p), p) for p, m in readable
                    if isinstance(m.get("val_loss"), (int, float)))
    for _, _, p in scored:  # the best verified one by validation loss
        if verified(p):
            keep.add(p)
            break
    removed = []
    for p, _ in readable:
        if p in keep or verdict.get(p) is False:
            continue
        discard(p)
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
