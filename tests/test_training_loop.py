"""The training loop: clipping, AdamW groups, events / metrics.jsonl, non-finite handling, thread control."""
from __future__ import annotations

import threading

import pytest
import torch
import torch.nn as nn

from llm_core import CheckpointError, ConfigError
from llm_core.training import Trainer, latest_checkpoint, list_runs, lr_at, read_metrics
from llm_core.training.checkpoint import save_checkpoint
from llm_core.training.objectives import LanguageModelingObjective
from llm_core.training.optim import clip_gradients, parameter_groups
from training_helpers import tiny_config


def test_clip_gradients_to_expected_norm() -> None:
    a = nn.Parameter(torch.zeros(2))
    b = nn.Parameter(torch.zeros(1))
    a.grad, b.grad = torch.tensor([3.0, 4.0]), torch.tensor([12.0])  # global norm sqrt(9+16+144) = 13
    norm, clipped = clip_gradients([a, b], max_norm=6.5)
    assert norm == pytest.approx(13.0) and clipped
    after = torch.cat([a.grad, b.grad]).norm()
    assert after == pytest.approx(6.5, rel=1e-5)
    assert torch.allclose(a.grad, torch.tensor([1.5, 2.0]))  # direction kept: scaled by 6.5 / 13
    norm, clipped = clip_gradients([a, b], max_norm=None)  # measuring only
    assert norm == pytest.approx(6.5, rel=1e-5) and not clipped


def test_weight_decay_only_on_matrices(tmp_path) -> None:
    trainer = Trainer(tiny_config(tmp_path))
    decay, no_decay = parameter_groups(trainer.model, trainer.config)
    decayed = {id(p) for p in decay["params"]}
    names = {id(p): n for n, p in trainer.model.named_parameters()}
    assert decay["weight_decay"] == trainer.config.weight_decay and no_decay["weight_decay"] == 0.0
    assert all(p.dim() >= 2 for p in decay["params"])
    assert id(trainer.model.tok_emb.weight) not in decayed and id(trainer.model.pos_emb.weight) not in decayed
    assert id(trainer.model.blocks[0].attn.qkv.weight) in decayed
    assert not any(names[i].endswith("bias") for i in decayed)


def test_step_events_and_metrics_file(tmp_path) -> None:
    cfg = tiny_config(tmp_path, max_norm=1e-3, clip_during_warmup=False)
    trainer = Trainer(cfg)
    seen: list[dict] = []
    trainer.subscribe(seen.append)
    end = trainer.run()
    assert end["reason"] == "finished" and trainer.state == "finished" and trainer.step == 6
    events = read_metrics(trainer.run_dir)
    assert [e["type"] for e in events] == [e["type"] for e in seen]  # file and subscribers see the same
    steps = [e for e in events if e["type"] == "step"]
    assert [e["step"] for e in steps] == list(range(6))
    window = cfg.batch_size * cfg.context_length
    for e in steps:
        assert e["lr"] == pytest.approx(lr_at(e["step"], cfg))
        assert e["tokens"] == (e["step"] + 1) * window
        assert e["loss"] > 0 and e["tokens_per_s"] > 0 and e["epoch"] == 0
        # Pre-clip norm recorded; clipping only after warmup (clip_during_warmup=False).
        assert e["grad_norm"] > 1e-3
        assert e["clipped"] == (e["step"] >= cfg.warmup_steps)
    evals = [e for e in events if e["type"] == "eval"]
    assert [e["step"] for e in evals] == [2, 5]
    last = evals[-1]
    assert {"blocks.0", "blocks.1", "tok_emb"} <= set(last["layer_grad_norms"])
    assert last["clip_fraction"] == pytest.approx(4 / 6)
    assert last["val_loss"] > 0 and last["train_loss"] > 0 and isinstance(last["sample"], str)
    assert events[0]["type"] == "start" and events[0]["total_steps"] == 6
    assert [e["type"] for e in events[-2:]] == ["checkpoint", "end"]
    (info,) = list_runs(cfg.out)
    assert info.status == "finished" and info.steps == 6 and info.checkpoints == ["step-00000006"]
    assert info.last_loss == pytest.approx(steps[-1]["loss"])


class PoisonedObjective(LanguageModelingObjective):
    """Returns a NaN loss on chosen training steps (to test the non-finite guard)."""

    def __init__(self, bad_steps: set[int]) -> None:
        self.bad_steps = bad_steps
        self.trainer: Trainer | None = None

    def loss(self, model, batch):
        loss, metrics = super().loss(model, batch)
        if model.training and self.trainer.step in self.bad_steps:
            loss = loss * float("nan")
        return loss, metrics


def _poisoned(tmp_path, bad: set[int], **overrides) -> tuple[Trainer, dict[int, dict]]:
    objective = PoisonedObjective(bad)
    trainer = Trainer(tiny_config(tmp_path, **overrides), objective=objective)
    objective.trainer = trainer
    weights: dict[int, dict] = {}  # weights right after each step
    trainer.subscribe(lambda e: e["type"] == "step" and weights.__setitem__(
        e["step"], {k: v.clone() for k, v in trainer.model.state_dict().items()}))
    return trainer, weights


def test_nonfinite_loss_stops_before_the_update(tmp_path) -> None:
    trainer, weights = _poisoned(tmp_path, {3}, checkpoint_every=2)
    end = trainer.run()
    assert trainer.state == "failed" and end["reason"] == "error"
    assert "step 3" in end["message"] and "non-finite loss" in end["message"]
    assert latest_checkpoint(trainer.run_dir).name == "step-00000002"  # the last good one stays the latest
    for k, v in trainer.model.state_dict().items():
        assert torch.equal(v, weights[2][k])  # step 3 never reached the optimizer


def test_skip_policy_skips_and_continues(tmp_path) -> None:
    trainer, weights = _poisoned(tmp_path, {2}, nonfinite="skip", max_steps=5)
    end = trainer.run()
    assert end["reason"] == "finished"
    steps = {e["step"]: e for e in trainer.history if e["type"] == "step"}
    assert steps[2]["skipped"] and steps[2]["loss"] is None and "skipped" not in steps[3]
    assert all(torch.equal(weights[2][k], weights[1][k]) for k in weights[1])
    assert not all(torch.equal(weights[3][k], weights[2][k]) for k in weights[2])
    assert any(e["type"] == "alarm" and e["kind"] == "nonfinite" for e in trainer.history)
    assert read_metrics(trainer.run_dir)[-1]["reason"] == "finished"  # NaN written as null, file stays JSON


def test_skip_policy_stops_after_k_in_a_row(tmp_path) -> None:
    trainer, _ = _poisoned(tmp_path, {1, 2, 3}, nonfinite="skip", max_nonfinite_in_a_row=3)
    end = trainer.run()
    assert trainer.state == "failed" and "step 3" in end["message"] and "3 in a row" in end["message"]


def test_nonfinite_weights_are_never_checkpointed(tmp_path) -> None:
    trainer = Trainer(tiny_config(tmp_path))
    with torch.no_grad():
        trainer.model.ln_f.weight[0] = float("inf")
    with pytest.raises(CheckpointError, match="non-finite"):
        save_checkpoint(tmp_path / "r", 1, trainer.model, {}, {})
    trainer._checkpoint_or_alarm()
    assert latest_checkpoint(trainer.run_dir) is None
    assert trainer.history[-1]["kind"] == "nonfinite_weights"


def test_pause_resume_stop_from_another_thread(tmp_path) -> None:
    trainer = Trainer(tiny_config(tmp_path, max_steps=50))
    paused_after = threading.Event()

    def control(event: dict) -> None:
        if event["type"] == "step" and event["step"] == 1:
            trainer.pause()
            paused_after.set()
        if event["type"] == "step" and event["step"] == 3:
            trainer.set_lr_scale(0.5)
            trainer.stop()

    trainer.subscribe(control)
    worker = threading.Thread(target=trainer.run)
    worker.start()
    assert trainer.wait_for_state("paused", timeout=60)
    assert trainer.step == 2  # paused at the boundary after step 1
    assert trainer.wait_for_state("paused", timeout=0)  # and stays there
    trainer.resume_training()
    worker.join(timeout=120)
    assert not worker.is_alive() and paused_after.is_set()
    assert trainer.state == "finished" and trainer.step == 4
    assert trainer.history[-1]["reason"] == "stopped"
    assert latest_checkpoint(trainer.run_dir).name == "step-00000004"  # stop always ends with a checkpoint


def test_moe_runs_report_aux_loss_and_expert_load(tmp_path) -> None:
    trainer = Trainer(tiny_config(tmp_path, max_steps=2, moe_experts=2, moe_top_k=1))
    trainer.run()
    step = next(e for e in trainer.history if e["type"] == "step")
    assert step["aux_loss"] > 0 and len(step["expert_load"]) == 2
    assert sum(step["expert_load"]) == pytest.approx(1.0, abs=1e-3)


class BetaObjective(LanguageModelingObjective):
    TUNABLES = ("beta",)
    beta = 0.1  # stands in for the DPO objective's live-tunable beta


def test_lr_scale_and_beta_apply_at_the_next_step(tmp_path) -> None:
    cfg = tiny_config(tmp_path, max_steps=3)
    trainer = Trainer(cfg, objective=BetaObjective())

    def change(event: dict) -> None:
        if event["type"] == "step" and event["step"] == 0:
            trainer.set_lr_scale(0.5)
            trainer.set_beta(0.25)

    trainer.subscribe(change)
    trainer.run()
    steps = [e for e in trainer.history if e["type"] == "step"]
    assert "lr_scale" not in steps[0] and steps[0]["beta"] == 0.1
    assert steps[1]["lr"] == pytest.approx(0.5 * lr_at(1, cfg)) and steps[1]["lr_scale"] == 0.5
    assert steps[1]["beta"] == 0.25
    with pytest.raises(ConfigError):
        trainer.set_lr_scale(-1)


def test_the_eval_sample_is_the_engines_greedy_continuation(tmp_path) -> None:
    from llm_core.engine import Engine, SamplingParams
    from llm_core.training.evaluation import sample_prompt_ids

    trainer = Trainer(tiny_config(tmp_path, sample_tokens=6))
    ids = sample_prompt_ids(trainer.config, trainer.tokenizer, trainer.val_data, trainer.train_data)
    trainer.model.train()
    expected = Engine(trainer.model, trainer.tokenizer).generate_ids(ids, 6, SamplingParams(truncate=True))
    assert trainer.sample() == trainer.tokenizer.decode(ids) + trainer.tokenizer.decode(expected)
    assert trainer.model.training  # sampling mid-training leaves the training mode on
