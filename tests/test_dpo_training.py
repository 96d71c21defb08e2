"""DPO through the Trainer (reward accuracy on training pairs goes up; beta control) and `workbench dpo`."""
from __future__ import annotations

import json
import random

import pytest
import torch
from typer.testing import CliRunner

from llm_core import GPT, GPTConfig, Trainer, WorkbenchError
from llm_core.data import collate_preference
from llm_core.data.instruction import shift_and_mask
from llm_core.dpo import evaluate_dpo
from llm_core.training import TrainConfig, read_metrics
from training_helpers import tiny_config
from workbench.cli import app

DPO_KEYS = {"beta", "chosen_reward", "rejected_reward", "reward_margin", "reward_accuracy",
            "policy_chosen_logp", "policy_rejected_logp"}


def preference_items(n: int, seed: int) -> list[dict[str, torch.Tensor]]:
    """Pairs over a 23-token vocabulary: a random prompt, then two different random responses."""
    rng = random.Random(seed)
    items = []
    for _ in range(n):
        prompt = [rng.randrange(1, 23) for _ in range(rng.randint(2, 5))]
        chosen = [rng.randrange(1, 23) for _ in range(rng.randint(2, 4))]
        rejected = [t % 22 + 1 for t in chosen[::-1]] + [rng.randrange(1, 23)]
        c_ids, c_labels = shift_and_mask(prompt, chosen, 16)
        r_ids, r_labels = shift_and_mask(prompt, rejected, 16)
        items.append({"chosen_input_ids": c_ids, "chosen_labels": c_labels,
                      "rejected_input_ids": r_ids, "rejected_labels": r_labels})
    return items


def test_short_dpo_training_raises_reward_accuracy_on_training_pairs(tmp_path) -> None:
    model = GPT(GPTConfig(vocab_size=23, context_length=16, d_model=16, n_layers=1, n_heads=2))
    model.reset_parameters(generator=torch.Generator().manual_seed(0))
    train, val = preference_items(16, seed=1), preference_items(4, seed=2)
    collate = lambda items: collate_preference(items, pad_id=0)  # noqa: E731
    config = TrainConfig(stage="dpo", data="in-memory", beta=0.1, max_steps=24, batch_size=4, peak_lr=1e-2,
                         min_lr=1e-3, warmup_steps=2, eval_every=12, eval_batches=1, sample_tokens=0,
                         checkpoint_every=100, bf16=False, device="cpu", out=str(tmp_path), name="dpo", seed=3)
    trainer = Trainer(config, model=model, train_data=train, val_data=val, collate_fn=collate)
    assert trainer.objective.reference == "copy"
    pairs = [collate(train[i:i + 4]) for i in range(0, 16, 4)]
    before = evaluate_dpo(trainer.objective, trainer.model, pairs)
    trainer.set_beta(0.3)  # applied at the first step boundary
    end = trainer.run()
    assert end["reason"] == "finished"
    after = evaluate_dpo(trainer.objective, trainer.model, pairs)
    assert before["val_reward_accuracy"] == 0.0  # policy == reference: every pair is a tie
    assert before["val_loss"] == pytest.approx(0.6931, abs=1e-3)
    assert after["val_reward_accuracy"] >= 0.9 and after["val_loss"] < 0.5
    events = read_metrics(trainer.run_dir)
    step_events = [e for e in events if e["type"] == "step"]
    assert DPO_KEYS <= set(step_events[0]) and {e["beta"] for e in step_events} == {0.3}
    assert step_events[0]["loss"] == pytest.approx(0.6931, abs=1e-3)  # log 2 at step 0
    evals = [e for e in events if e["type"] == "eval"]
    assert evals and {"val_reward_accuracy", "val_reward_margin"} <= set(evals[-1])


def _base_checkpoint(tmp_path) -> str:
    """A 1-step pretraining run whose context fits the Alpaca prompt with the byte tokenizer."""
    cfg = tiny_config(tmp_path, max_steps=1, n_layers=1, context_length=256, val_fraction=0.0, name="base",
                      eval_every=1, eval_batches=1, sample_tokens=0, batch_size=2, warmup_steps=0)
    trainer = Trainer(cfg)
    trainer.run()
    return str(trainer.run_dir)


def test_workbench_dpo_cli_with_lora(tmp_path) -> None:
    base = _base_checkpoint(tmp_path)
    prefs = tmp_path / "prefs.json"
    prefs.write_text(json.dumps([{"instruction": f"Add {i} and 1.", "input": "", "chosen": str(i + 1),
                                  "rejected": str(i + 2)} for i in range(8)]))
    sets = dict(max_steps=3, batch_size=2, eval_every=3, eval_batches=1, sample_tokens=0, device="cpu",
                bf16="false", name="dpo", num_threads=1, val_fraction=0.25)
    args = ["dpo", "-c", base, "--data", str(prefs), "--beta", "0.2", "--adapter", "lora", "--out", str(tmp_path / "runs"),
            "--estimate-steps", "0"] + [x for k, v in sets.items() for x in ("--set", f"{k}={v}")]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "adapters off (no copy)" in result.output
    assert "reward_margin" in result.output and "reward_accuracy" in result.output
    run_dir = tmp_path / "runs" / "dpo"
    config = json.loads((run_dir / "config.json").read_text())
    assert (config["stage"], config["adapter"], config["beta"], config["max_steps"]) == ("dpo", "lora", 0.2, 3)
    assert config["peak_lr"] == 1e-4  # the DPO recipe's adapter learning rate, not pretraining's 1e-3
    steps = [e for e in read_metrics(run_dir) if e["type"] == "step"]
    assert len(steps) == 3 and DPO_KEYS <= set(steps[-1])

    missing = CliRunner().invoke(app, ["dpo", "-c", base, "--data", str(tmp_path / "nope.json")])
    assert isinstance(missing.exception, WorkbenchError) and "nope.json" in str(missing.exception)


@pytest.mark.parametrize("extra, needle", [(["--adapter", "lora", "--dora"], "exclude"),
                                           ([], "neither a run folder"),  # -c is not a checkpoint
                                           (["--set", "stage=sft"], "stage")])
def test_workbench_dpo_bad_input_is_one_line_error(tmp_path, extra: list[str], needle: str) -> None:
    result = CliRunner().invoke(app, ["dpo", "-c", str(tmp_path), "--out", str(tmp_path)] + extra)
    assert isinstance(result.exception, WorkbenchError), result.output
    assert needle in str(result.exception) and "\n" not in str(result.exception)


def test_trainer_turns_collapse_into_alarm_events_by_itself(tmp_path) -> None:
    """No CLI involved: a DPO Trainer feeds its own step events to the collapse monitor."""
    model = GPT(GPTConfig(vocab_size=23, context_length=16, d_model=16, n_layers=1, n_heads=2))
    config = TrainConfig(stage="dpo", data="in-memory", max_steps=2, batch_size=2, warmup_steps=0, bf16=False,
                         device="cpu", out=str(tmp_path), name="dpo", sample_tokens=0)
    trainer = Trainer(config, model=model, train_data=preference_items(4, seed=1),
                      collate_fn=lambda items: collate_preference(items, pad_id=0))
    for i in range(60):  # the chosen log-prob falls steadily while the margin rises: the policy pushes both down
        trainer.emit("step", step=i, loss=0.5, policy_chosen_logp=-10.0 - 2.0 * i, chosen_reward=-0.2 * i,
                      rejected_reward=-0.4 * i, reward_margin=0.2 * i, reward_accuracy=1.0)
    alarms = [e for e in read_metrics(trainer.run_dir) if e["type"] == "alarm"]
    assert [a["kind"] for a in alarms] == ["chosen_logp_falling"]


def _prefs_with_identical_pair(path) -> str:
    rows = [{"instruction": f"Add {i} and 1.", "input": "", "chosen": str(i + 1), "rejected": str(i + 2)}
            for i in range(6)]
    rows.insert(3, {"instruction": "Say hi.", "input": "", "chosen": "hi", "rejected": "hi"})
    path.write_text(json.dumps(rows))
    return str(path)


def test_identical_pairs_are_refused_unless_the_config_drops_them(tmp_path) -> None:
    prefs = _prefs_with_identical_pair(tmp_path / "prefs.json")
    cfg = tiny_config(tmp_path, stage="dpo", data=prefs, context_length=256, val_fraction=0.0, sample_tokens=0)
    with pytest.raises(WorkbenchError, match=r"prefs\.json.*3.*identical"):
        Trainer(cfg)
    trainer = Trainer(cfg.with_overrides(["drop_identical_pairs=true", "name=kept"]))
    assert len(trainer.train_data) == 6 and trainer.train_data.dropped == 1
