"""GRPO through the Trainer on a tiny model: the step and eval lines, exact resume, bad input."""
from __future__ import annotations

import json
import random

import pytest
import torch

from llm_core import Trainer, WorkbenchError
from llm_core.training import TrainConfig, read_metrics
from training_helpers import tiny_config

STEP_KEYS = {"reward_mean", "reward_std", "accuracy", "kl", "zero_std_fraction", "completion_length",
             "clip_fraction", "entropy", "tokens_sampled", "format", "step_by_step_share"}


def prompt_file(tmp_path, n: int = 24):
    """Alpaca records whose outputs carry the answer line (the answer is read from there)."""
    rng = random.Random(0)
    records = []
    for _ in range(n):
        a, b = rng.randint(1, 9), rng.randint(1, 9)
        records.append({"instruction": f"{a}+{b}? Think step by step.", "input": "",
                        "output": f"The answer is {a + b}."})
    path = tmp_path / "prompts.json"
    path.write_text(json.dumps(records))
    return path


def rl_config(tmp_path, **overrides) -> TrainConfig:
    values = dict(stage="rl", data=str(prompt_file(tmp_path)), context_length=192, max_steps=4, batch_size=2,
                  group_size=3, rl_max_new_tokens=6, rl_eval_problems=2, rl_temperature=1.0, eval_every=2,
                  peak_lr=1e-3, min_lr=1e-4, warmup_steps=1, val_fraction=0.2, sample_tokens=0)
    values.update(overrides)
    return tiny_config(tmp_path, **values)


def test_rl_steps_report_rewards_and_eval_reports_greedy_accuracy(tmp_path) -> None:
    trainer = Trainer(rl_config(tmp_path, name="rl", kl_beta=0.1))
    assert trainer.run()["reason"] == "finished"
    events = read_metrics(trainer.run_dir)
    steps = [e for e in events if e["type"] == "step"]
    assert len(steps) == 4 and all(STEP_KEYS <= set(e) for e in steps)
    for e in steps:
        assert 0 <= e["accuracy"] <= 1 and 0 <= e["zero_std_fraction"] <= 1 and e["kl"] >= 0
        assert 1 <= e["completion_length"] <= 6 and e["tokens_sampled"] > 0 and e["tokens"] > 0
    evals = [e for e in events if e["type"] == "eval"]
    assert evals and all({"eval_neutral_accuracy", "eval_cot_accuracy"} <= set(e) for e in evals)


def test_mu_passes_reuse_one_batch_of_rollouts(tmp_path) -> None:
    trainer = Trainer(rl_config(tmp_path, name="mu", mu=2))
    trainer.run()
    steps = [e for e in read_metrics(trainer.run_dir) if e["type"] == "step"]
    # steps 0 and 1 share their rollouts (the same rewards), as do 2 and 3
    assert steps[0]["reward_mean"] == steps[1]["reward_mean"] and steps[0]["clip_fraction"] == 0
    assert trainer.objective.rollouts_sampled == 2


@pytest.mark.parametrize("mu", [1, 2])
def test_rl_resumes_exactly(tmp_path, mu) -> None:
    full = Trainer(rl_config(tmp_path, name="full", mu=mu, checkpoint_every=1))
    full.run()
    part = Trainer(rl_config(tmp_path, name="part", mu=mu, checkpoint_every=1))
    part.subscribe(lambda e: e["type"] == "step" and e["step"] == 2 and part.stop())  # stop mid-way through a mu cycle
    assert part.run()["reason"] == "stopped"
    resumed = Trainer.resume(part.run_dir)
    assert resumed.run()["reason"] == "finished"

    def rewards(run):
        return [(e["step"], e["reward_mean"], e["loss"]) for e in read_metrics(run) if e["type"] == "step"]

    assert rewards(part.run_dir) == rewards(full.run_dir)
    for (name, a), b in zip(full.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), name


def test_mixed_prompts_ask_half_the_problems_bare_and_half_with_the_cue(tmp_path) -> None:
    trainer = Trainer(rl_config(tmp_path, name="mixed", rl_prompt="mixed"))
    records = list(trainer.train_data.records) + list(trainer.val_data.records)
    cued = [r["prompt"].count("Think step by step.") for r in records]
    assert len(records) == 24 and sorted(cued) == [0] * 12 + [1] * 12


@pytest.mark.parametrize("overrides, needle", [
    (dict(reward="accuracy,bogus"), "unknown reward 'bogus'"),
    (dict(group_size=1), "group_size"),
    (dict(clip_eps=0.0), "clip_eps"),
    (dict(rl_prompt="both"), "rl_prompt"),
])
def test_bad_settings_are_one_line_errors(tmp_path, overrides, needle) -> None:
    with pytest.raises(WorkbenchError) as info:
        rl_config(tmp_path, **overrides)
    assert needle in str(info.value) and "\n" not in str(info.value)


def test_rl_from_a_checkpoint_without_its_tokenizer_is_a_one_line_error(tmp_path) -> None:
    import shutil

    base = Trainer(tiny_config(tmp_path, name="base", max_steps=2, context_length=64, checkpoint_every=2))
    base.run()
    shutil.rmtree(base.run_dir / "tokenizer")  # RL decodes its completions: it cannot run without one
    with pytest.raises(WorkbenchError) as info:
        Trainer(rl_config(tmp_path, name="rl", init_from=str(base.run_dir), tokenizer=None, context_length=64,
                          max_steps=1, warmup_steps=0)).run()
    message = str(info.value)
    assert "tokenizer" in message and "missing" in message and str(base.run_dir) in message and "\n" not in message


def test_workbench_rl_trains_from_a_checkpoint_and_plot_shows_the_reward(tmp_path) -> None:
    from typer.testing import CliRunner

    from workbench.cli import app

    from training_helpers import corpus

    corpus(tmp_path / "corpus.txt", n_chars=4000)  # windows of a 192-token context
    base = Trainer(tiny_config(tmp_path, name="base", context_length=192, max_steps=2, batch_size=2,
                               val_fraction=0.3))
    base.run()
    runner = CliRunner()
    args = ["rl", "--checkpoint", str(base.run_dir), "--data", str(prompt_file(tmp_path)), "--out", str(tmp_path / "runs"),
            "--estimate-steps", "0"]
    for pair in ("name=cli", "max_steps=2", "batch_size=2", "group_size=2", "rl_max_new_tokens=4",
                 "rl_eval_problems=1", "eval_every=1", "sample_tokens=0"):
        args += ["--set", pair]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "GRPO: 2 prompts x G=2" in result.output and "step 0: reward" in result.output
    assert "greedy accuracy neutral" in result.output
    plot = runner.invoke(app, ["plot", str(tmp_path / "runs" / "cli"), "--metric", "reward"])
    assert plot.exit_code == 0 and "RL reward" in plot.output
    bad = runner.invoke(app, args[:-2] + ["--set", "reward=bogus"])
    assert bad.exit_code != 0 and "unknown reward 'bogus'" in str(bad.exception)


class _ScriptedEngine:
    """An Engine stand-in that answers every prompt with a fixed worked solution, and records how it was
    asked: what `greedy_accuracy` decodes with, without a model."""

    class _Tokenizer:
        def encode(self, text: str) -> list[int]:
            return [ord(c) % 256 for c in text]

        def decode(self, ids: list[int]) -> str:
            return "".join(chr(i) for i in ids)

    def __init__(self, answer: str) -> None:
        self.tokenizer, self.answer, self.calls = self._Tokenizer(), answer, []
        self.model = torch.nn.Module()  # a 48-token context (the old code cut answers at it)
        self.model.config = type("C", (), {"context_length": 48})()

    def generate_ids(self, ids, max_new_tokens, params=None):
        self.calls.append((len(ids), max_new_tokens, params))
        return [ord(c) for c in self.answer[:max_new_tokens]]


def test_greedy_accuracy_lets_a_long_answer_outgrow_the_context_as_workbench_eval_does() -> None:
    from llm_core.engine import RESPONSE_STOPS
    from llm_core.experiment.arithmetic import Problem, worked_solution
    from llm_core.rl.objective import greedy_accuracy

    # A prompt and a worked answer each longer than the 48-token context. Cutting the answer at the context
    # (the old behaviour) lost "The answer is 5." and scored 0.
    problem = Problem((63, 43, 61, 40), ("+", "-", "-"), "Ruby has 63 cards. She gets 43 more, then loses 61. "
                      "Later she gives 40 to her friend. How many are left?")
    engine = _ScriptedEngine(worked_solution(problem))
    records = [{"instruction": problem.question, "answer": problem.answer}]
    accuracy, worked = greedy_accuracy(engine, records, "cot", max_new_tokens=256)
    assert accuracy == 1.0 and worked == 1.0
    (prompt_len, asked, params), = engine.calls
    assert prompt_len > 48 and asked == 256
    assert params.truncate and tuple(params.stop) == RESPONSE_STOPS
