"""Checkpoints: atomic layout, verification, refusal of corrupt/mismatched files, cleanup, retention."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_model

from llm_core import CheckpointError
from llm_core.embedding import COLUMN_MAJOR_MIN_VOCAB, column_major
from llm_core.model import GPT, GPTConfig
from llm_core.training import Trainer, latest_checkpoint, list_runs, load_checkpoint, read_metrics
from llm_core.training.checkpoint import MANIFEST, _sha256, load_trainer_state, load_weights, save_weights
from training_helpers import row_major_copy, tiny_config


@pytest.fixture
def run(tmp_path) -> Trainer:
    trainer = Trainer(tiny_config(tmp_path, max_steps=4, checkpoint_every=2, keep_last=5))
    trainer.run()
    return trainer


def _one_line(exc: pytest.ExceptionInfo) -> str:
    message = str(exc.value)
    assert "\n" not in message
    return message


def test_layout_and_load(run: Trainer) -> None:
    step_dir = latest_checkpoint(run.run_dir)
    assert step_dir.name == "step-00000004"
    assert sorted(p.name for p in step_dir.iterdir()) == ["manifest.json", "model.safetensors", "trainer_state.pt"]
    manifest = json.loads((step_dir / MANIFEST).read_text())
    assert manifest["step"] == 4 and manifest["format_version"] == 1
    assert manifest["files"]["model.safetensors"]["sha256"] == _sha256(step_dir / "model.safetensors")
    assert manifest["config"]["model_config"]["d_model"] == 32
    loaded = load_checkpoint(run.run_dir)
    assert loaded.step == 4 and loaded.path == step_dir and loaded.tokenizer.n_vocab == 257
    for a, b in zip(loaded.model.state_dict().values(), run.model.state_dict().values()):
        assert torch.equal(a, b)
    assert load_checkpoint(run.run_dir / "checkpoints" / "step-00000002").step == 2


def test_the_column_major_tied_model_is_written_as_save_model_writes_the_row_major_one(tmp_path) -> None:
    """Checkpoint files keep their format: the tied matrix once, row-major, the other name in the metadata."""
    vocab = COLUMN_MAJOR_MIN_VOCAB + 1
    model = GPT(GPTConfig(vocab_size=vocab, context_length=8, d_model=8, n_layers=1, n_heads=2))
    assert column_major(model.tok_emb.weight)
    row = row_major_copy(model)
    save_weights(model, tmp_path / "model.safetensors")
    save_model(row, str(tmp_path / "theirs.safetensors"))  # safetensors' own writer, on the row-major model
    with safe_open(tmp_path / "model.safetensors", "pt") as ours, safe_open(tmp_path / "theirs.safetensors", "pt") as theirs:
        assert sorted(ours.keys()) == sorted(theirs.keys()) and "tok_emb.weight" not in ours.keys()
        assert ours.metadata() == theirs.metadata() == {"tok_emb.weight": "lm_head.weight"}
        for key in ours.keys():
            assert torch.equal(ours.get_tensor(key), theirs.get_tensor(key)), key
    fresh = GPT(model.config)  # loading copies into the column-major storage
    load_weights(fresh, tmp_path)
    assert torch.equal(fresh.tok_emb.weight, model.tok_emb.weight) and fresh.tok_emb.weight.stride() == (1, vocab)
    assert fresh.lm_head.weight is fresh.tok_emb.weight


def test_truncated_file_is_refused_and_skipped(run: Trainer) -> None:
    newest = latest_checkpoint(run.run_dir)
    weights = newest / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(newest)
    assert "model.safetensors" in _one_line(info) and "truncated" in str(info.value)
    assert latest_checkpoint(run.run_dir).name == "step-00000002"  # the newest that verifies
    with pytest.raises(CheckpointError, match="model.safetensors: unreadable"):
        load_weights(run.model, newest)  # even without the manifest check, the reader refuses it


def test_flipped_byte_is_refused(run: Trainer) -> None:
    newest = latest_checkpoint(run.run_dir)
    state = newest / "trainer_state.pt"
    data = bytearray(state.read_bytes())
    data[len(data) // 2] ^= 0xFF
    state.write_bytes(bytes(data))
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(newest)
    assert "trainer_state.pt" in _one_line(info) and "SHA-256" in str(info.value)


def test_shape_mismatch_is_refused(run: Trainer) -> None:
    wider = GPT(GPTConfig(vocab_size=257, context_length=16, d_model=64, n_layers=2, n_heads=2))
    with pytest.raises(CheckpointError) as info:
        load_weights(wider, latest_checkpoint(run.run_dir))
    message = _one_line(info)
    assert "model.safetensors" in message and "shape" in message
    deeper = GPT(GPTConfig(vocab_size=257, context_length=16, d_model=32, n_layers=3, n_heads=2))
    with pytest.raises(CheckpointError, match="missing"):
        load_weights(deeper, latest_checkpoint(run.run_dir))


def test_pickled_objects_are_refused(run: Trainer, tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    torch.save({"optimizer": Path("/etc/passwd")}, bad / "trainer_state.pt")  # an arbitrary class
    with pytest.raises(CheckpointError, match="trainer_state.pt: unreadable"):
        load_trainer_state(bad)


def test_temporary_dirs_are_cleaned_and_never_latest(run: Trainer) -> None:
    # A save interrupted by a crash leaves a temporary folder: it never counts, and the next start deletes it.
    leftover = run.run_dir / "checkpoints" / ".tmp-step-00000009-123"
    leftover.mkdir()
    (leftover / "model.safetensors").write_bytes(b"partial")
    assert latest_checkpoint(run.run_dir).name == "step-00000004"
    Trainer.resume(run.run_dir, max_steps=5)
    assert not leftover.exists()


def test_keep_last_and_best_by_validation(tmp_path) -> None:
    trainer = Trainer(tiny_config(tmp_path, max_steps=8, checkpoint_every=1, eval_every=1, keep_last=2,
                                  peak_lr=0.3, min_lr=0.3, warmup_steps=0, max_norm=None))
    trainer.run()
    events = read_metrics(trainer.run_dir)
    val = {e["step"] + 1: e["val_loss"] for e in events if e["type"] == "eval"}  # by checkpoint step
    best = min(val, key=val.get)
    kept = {p.name for p in (trainer.run_dir / "checkpoints").iterdir()}
    assert kept == {f"step-{s:08d}" for s in {7, 8, best}}


def test_list_runs_reports_broken_folders(run: Trainer, tmp_path) -> None:
    root = run.run_dir.parent
    (root / "broken").mkdir()
    (root / "bad-json").mkdir()
    (root / "bad-json" / "config.json").write_text("{nope")
    runs = {r.name: r for r in list_runs(root)}
    assert runs["broken"].status == "broken" and "config.json" in runs["broken"].broken
    assert runs["bad-json"].status == "broken" and "JSON" in runs["bad-json"].broken
    good = runs[run.run_dir.name]
    assert good.status == "finished" and good.checkpoints == ["step-00000002", "step-00000004"]
    assert good.best_val_loss is not None


def test_read_metrics_ignores_a_partial_last_line(tmp_path) -> None:
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"type": "step", "step": 0}\n{"type": "step", "st')
    assert read_metrics(path) == [{"type": "step", "step": 0}]


def test_adapter_runs_rebuild_their_adapters_on_load(tmp_path) -> None:
    trainer = Trainer(tiny_config(tmp_path, max_steps=2, adapter="lora", lora_rank=2, adapter_targets="attn"))
    assert trainer.model.num_parameters(trainable_only=True) < trainer.model.num_parameters() / 4
    trainer.run()
    loaded = load_checkpoint(trainer.run_dir)
    assert loaded.config.adapter == "lora" and loaded.model.adapter_config.rank == 2
    for (name, a), b in zip(trainer.model.state_dict().items(), loaded.model.state_dict().values()):
        assert torch.equal(a, b), name
