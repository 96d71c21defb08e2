"""The teacher's top-k logits, cached on disk once, so later logit-distillation runs never run the teacher.

Logit distillation runs the frozen teacher on every batch. On text windows the teacher's outputs depend
only on the window, so they can be computed once and read back: for every window of the run's train and
validation splits, the k largest teacher logits per position and their token ids (`write_topk_cache`).
A run with `kd_cache=DIR` writes the cache there when the folder has none, and reads it otherwise; the
teacher is then not even loaded.

The approximation (as in sparse / top-k KD, e.g. Raman et al., 2023, "For Distillation, Tokens Are Not All
You Need"): the teacher distribution is cut to its top k tokens and renormalised over them,
q_k(j) = softmax(z_topk / T)_j, and the KD term is T^2 * sum_{j in top-k} q_k(j) (log q_k(j) - log p_S(j)),
where log p_S is the student's log-softmax at T over the FULL vocabulary. The mass the teacher puts outside
its top k (reported as `tail_mass` in the manifest: mean 1 - sum of the top-k probabilities at T = 1) is
dropped; the student is not told to put mass there, and any it does put there lowers log p_S(j) on the
kept tokens, so it is still pushed back. With k = V the term equals the exact forward KL (a test checks
it). Logits are stored in float16 (a 1e-3 relative error: far below what T^2 * KL can notice); the reverse
KL needs the teacher's full distribution and is refused with a cache.

Files in DIR: `teacher_topk.safetensors` (train_ids / train_logits: (windows, T, k) int32 / float16, and
val_* likewise) and `teacher_topk.json`, the manifest: the teacher checkpoint and the SHA-256 of its
weights, k, the vocabulary, the window length and stride, and the SHA-256 of each split's token stream. A
cache that does not match the run (another teacher, other data, another k) is refused with the field that
differs, never overwritten.
"""
from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any, Callable

import torch
from safetensors import safe_open
from safetensors.torch import save, save_file

from ..errors import ConfigError
from ..io import read_json_object, replace_atomic, write_atomic

CACHE_FILE = "teacher_topk.safetensors"
MANIFEST_FILE = "teacher_topk.json"
FORMAT = 1


def stream_sha256(dataset: Any) -> str:
    """SHA-256 of a text dataset's token stream (the windows are cut from it by context length and stride)."""
    return hashlib.sha256(save({"ids": dataset.ids.to(torch.int64).contiguous()})).hexdigest()


def expected_manifest(teacher: dict[str, str], k: int, vocab: int, splits: dict[str, Any]) -> dict[str, Any]:
    """What the manifest of a cache for these splits must say (`teacher`: path and weights SHA-256)."""
    check_text_splits(splits)
    first = next(iter(splits.values()))
    return {"format": FORMAT, "teacher": teacher["path"], "teacher_weights_sha256": teacher["sha256"], "k": k,
            "vocab_size": vocab, "context_length": first.context_length, "stride": first.stride,
            "splits": {name: {"windows": len(d), "stride": d.stride, "sha256": stream_sha256(d)}
                       for name, d in splits.items()}}


def check_text_splits(splits: dict[str, Any]) -> None:
    for name, dataset in splits.items():
        if not hasattr(dataset, "ids") or not hasattr(dataset, "stride"):
            raise ConfigError(f"kd_cache: caches the teacher on text windows only; the {name} data is "
                              f"{type(dataset).__name__} (drop kd_cache for instruction data)", field="kd_cache")


@torch.no_grad()
def write_topk_cache(folder: str | Path, teacher: torch.nn.Module, splits: dict[str, Any], k: int,
                     manifest: dict[str, Any], batch_size: int = 16,
                     progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Run `teacher` over every window of each split once and write its top-k logits (see the module doc).
    Written atomically: an interrupted write leaves no cache behind. Returns the manifest written."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    device = next(teacher.parameters()).device
    was_training = teacher.training
    teacher.eval()
    tensors: dict[str, torch.Tensor] = {}
    start, done = time.perf_counter(), 0
    total = sum(len(d) for d in splits.values())
    tail, positions = 0.0, 0
    try:
        for name, dataset in splits.items():
            n, T = len(dataset), dataset.context_length
            ids = torch.empty(n, T, k, dtype=torch.int32)
            logits = torch.empty(n, T, k, dtype=torch.float16)
            for lo in range(0, n, batch_size):
                x = torch.stack([dataset[i]["input_ids"] for i in range(lo, min(lo + batch_size, n))]).to(device)
                z = teacher(x).float()  # (b, T, V)
                top, where = z.topk(k, dim=-1)  # (b, T, k) each, largest first
                tail += float((1 - torch.softmax(z, -1).gather(-1, where).sum(-1)).sum())
                positions += top.shape[0] * top.shape[1]
                ids[lo: lo + len(x)], logits[lo: lo + len(x)] = where.int().cpu(), top.half().cpu()
                done += len(x)
                if progress is not None:
                    progress(done, total)
            tensors[f"{name}_ids"], tensors[f"{name}_logits"] = ids, logits
    finally:
        teacher.train(was_training)
    replace_atomic(folder / CACHE_FILE, lambda tmp: save_file(tensors, str(tmp)))
    written = {**manifest, "tail_mass": tail / max(positions, 1), "seconds": time.perf_counter() - start,
               "bytes": (folder / CACHE_FILE).stat().st_size}
    write_atomic(folder / MANIFEST_FILE, json.dumps(written, indent=1) + "\n")
    return written


def cache_matches(folder: str | Path, expected: dict[str, Any]) -> dict[str, Any] | None:
    """The manifest when `folder` holds a cache made for `expected`; None when it holds none; a ConfigError
    naming the first field that differs when it holds another run's cache (it is never overwritten)."""
    path = Path(folder) / MANIFEST_FILE
    if not path.is_file():
        if (Path(folder) / CACHE_FILE).exists():
            raise ConfigError(f"{Path(folder) / CACHE_FILE}: has no {MANIFEST_FILE} (an unfinished write?); "
                              "delete it to write the cache again", field="kd_cache")
        return None
    found = read_json_object(path, ConfigError)
    for key, value in expected.items():
        if found.get(key) != value:
            what = key if key != "splits" else "the data (token streams or windows)"
            raise ConfigError(f"{path}: a cache for another run: {what} differs ({found.get(key)!r} here, "
                              f"{value!r} wanted); use another kd_cache folder", field="kd_cache")
    if not (Path(folder) / CACHE_FILE).is_file():
        raise ConfigError(f"{Path(folder) / CACHE_FILE}: missing (the manifest is there)", field="kd_cache")
    return found


class CachedTeacherSplit(torch.utils.data.Dataset):
    """A text split whose items also carry the teacher's cached top-k: "teacher_ids" and "teacher_logits",
    (T, k) each, read from the memory-mapped cache file as the item is asked for."""

    def __init__(self, dataset: Any, folder: str | Path, split: str) -> None:
        self.dataset, self.split = dataset, split
        self.path = Path(folder) / CACHE_FILE
        self._file: Any = None  # opened on first use (and again in a forked data-loader worker)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getattr__(self, name: str) -> Any:  # ids, context_length, stride...: the wrapped dataset's
        if name in ("dataset", "split", "path", "_file"):
            raise AttributeError(name)
        return getattr(self.dataset, name)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        item = dict(self.dataset[index])
        if self._file is None:
            try:
                self._file = safe_open(str(self.path), framework="pt")
            except Exception as exc:
                raise ConfigError(f"{self.path}: unreadable teacher cache ({exc})", field="kd_cache") from None
        i = index % len(self)
        item["teacher_ids"] = self._file.get_slice(f"{self.split}_ids")[i].long()
        item["teacher_logits"] = self._file.get_slice(f"{self.split}_logits")[i].float()
        return item


def collate_with_teacher(collate: Callable) -> Callable:
    """`collate` for the text fields, the cached teacher tensors stacked beside them ((B, T, k) each)."""
    def both(items: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        batch = collate([{k: v for k, v in it.items() if not k.startswith("teacher_")} for it in items])
        batch["teacher_ids"] = torch.stack([it["teacher_ids"] for it in items])
        batch["teacher_logits"] = torch.stack([it["teacher_logits"] for it in items])
        return batch
    return both
