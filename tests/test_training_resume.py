"""Exact resume: N steps + stop + resume (objects rebuilt from the run folder) + N steps == 2N steps."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch

import llm_core.model
from llm_core.embedding import column_major
from llm_core.training import Trainer, load_checkpoint, read_metrics
from training_helpers import tiny_config

ROOT = Path(__file__).resolve().parents[1]


def _losses(run_dir: Path) -> list[float]:
    return [e["loss"] for e in read_metrics(run_dir) if e["type"] == "step"]


def _stop_after(trainer: Trainer, last_step: int) -> None:
    trainer.subscribe(lambda e: e["type"] == "step" and e["step"] == last_step and trainer.stop())


def _check_exact_resume(tmp_path: Path, n: int, in_new_process: bool = False, **overrides) -> Trainer:
    full = Trainer(tiny_config(tmp_path, name="full", max_steps=2 * n, **overrides))
    full.run()
    part = Trainer(tiny_config(tmp_path, name="part", max_steps=2 * n, **overrides))
    _stop_after(part, n - 1)
    assert part.run()["reason"] == "stopped" and part.step == n
    if in_new_process:
        code = "import sys; from llm_core.training import Trainer; Trainer.resume(sys.argv[1]).run()"
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        subprocess.run([sys.executable, "-c", code, str(part.run_dir)], check=True, cwd=tmp_path, env=env)
        resumed_model = load_checkpoint(part.run_dir).model
    else:
        resumed = Trainer.resume(part.run_dir)  # fresh model, optimizer, data, tokenizer
        assert resumed.step == n
        assert resumed.run()["reason"] == "finished"
        resumed_model = resumed.model
    full_losses, part_losses = _losses(full.run_dir), _losses(part.run_dir)
    assert len(full_losses) == 2 * n
    assert part_losses == full_losses  # equality, not closeness
    for (name, a), b in zip(full.model.state_dict().items(), resumed_model.state_dict().values()):
        assert torch.equal(a, b), name
    return full


def test_exact_resume_in_a_new_process(tmp_path) -> None:
    _check_exact_resume(tmp_path, n=3, in_new_process=True)


def test_exact_resume_of_a_column_major_tied_embedding(tmp_path, monkeypatch) -> None:
    """The layout large vocabularies take (`llm_core.embedding`): its weights and AdamW moments go through
    the checkpoint and back into the strided storage, with gradient accumulation."""
    monkeypatch.setattr(llm_core.model, "COLUMN_MAJOR_MIN_VOCAB", 1)
    full = _check_exact_resume(tmp_path, n=3, grad_accum=2, batch_size=2)
    assert column_major(full.model.tok_emb.weight)
    state = full.optimizer.state[full.model.tok_emb.weight]
    assert state["exp_avg"].stride() == full.model.tok_emb.weight.stride()


def test_exact_resume_at_an_epoch_boundary(tmp_path) -> None:
    probe = Trainer(tiny_config(tmp_path, name="probe", batch_size=8))
    n = probe.batches.batches_per_epoch  # the stop falls exactly at the end of epoch 0
    full = _check_exact_resume(tmp_path, n=n, batch_size=8)
    epochs = [e["epoch"] for e in read_metrics(full.run_dir) if e["type"] == "step"]
    assert epochs[n - 1] == 0 and epochs[n] == 1


def test_exact_resume_with_gradient_accumulation(tmp_path) -> None:
    full = _check_exact_resume(tmp_path, n=3, grad_accum=3, batch_size=2)
    tokens = [e["tokens"] for e in read_metrics(full.run_dir) if e["type"] == "step"]
    assert tokens[0] == 3 * 2 * 16  # one optimizer step consumed 3 micro-batches


def test_resume_extends_max_steps_and_trims_metrics(tmp_path) -> None:
    first = Trainer(tiny_config(tmp_path, name="r", max_steps=4, checkpoint_every=2))
    first.run()
    # Simulate a crash after step 5's log line but before its checkpoint: the stale lines are dropped.
    with open(first.run_dir / "metrics.jsonl", "a") as f:
        f.write('{"type": "step", "step": 4, "loss": 1.0}\n{"type": "step", "st')
    again = Trainer.resume(first.run_dir, max_steps=7)
    assert again.config.max_steps == 7 and again.step == 4
    again.run()
    steps = [e["step"] for e in read_metrics(first.run_dir) if e["type"] == "step"]
    assert steps == list(range(7))
