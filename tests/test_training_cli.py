"""`workbench train` / `workbench runs` through typer's CliRunner."""
from __future__ import annotations

import pytest
from typer.testing import CliRunner

from llm_core import ConfigError, TrainConfig, WorkbenchError
from llm_core.training import read_metrics
from workbench.cli import app
from training_helpers import byte_tokenizer, corpus

runner = CliRunner()


def _args(tmp_path) -> list[str]:
    tok = byte_tokenizer(tmp_path / "tok")
    data = corpus(tmp_path / "corpus.txt")
    sets = dict(data=data, tokenizer=tok, model="tiny", d_model=32, n_layers=2, n_heads=2, context_length=16,
                max_steps=4, batch_size=4, warmup_steps=1, eval_every=2, eval_batches=1, sample_tokens=2,
                bf16="false", device="cpu", name="cli", num_threads=1)
    out = ["train", "--out", str(tmp_path / "runs"), "--estimate-steps", "1"]
    for k, v in sets.items():
        out += ["--set", f"{k}={v}"]
    return out


def test_train_then_resume_then_runs(tmp_path) -> None:
    result = runner.invoke(app, _args(tmp_path))
    assert result.exit_code == 0, result.output
    assert "memory estimate" in result.output and "time estimate" in result.output
    assert "finished at step 4 of 4" in result.output
    run_dir = tmp_path / "runs" / "cli"
    result = runner.invoke(app, ["train", "--resume", str(run_dir), "--set", "max_steps=6", "--estimate-steps", "0"])
    assert result.exit_code == 0, result.output
    assert [e["step"] for e in read_metrics(run_dir) if e["type"] == "step"] == list(range(6))
    result = runner.invoke(app, ["runs", "--root", str(tmp_path / "runs")])
    assert result.exit_code == 0 and "cli" in result.output and "6/6" in result.output
    assert "step-00000006" in result.output


def test_train_runs_the_trainer_on_the_calling_thread_and_shows_every_event(tmp_path, monkeypatch) -> None:
    """Training stays on the main thread: a second thread gets its own OpenMP team and trained 14-17% slower
    (workbench/commands/train.py `_follow`); the progress display, on its own thread, still shows the end."""
    import threading

    from llm_core.training import Trainer

    threads = []
    run = Trainer.run

    def recording_run(self, *args, **kwargs):
        threads.append(threading.current_thread())
        return run(self, *args, **kwargs)

    monkeypatch.setattr(Trainer, "run", recording_run)
    result = runner.invoke(app, _args(tmp_path))
    assert result.exit_code == 0, result.output
    assert threads == [threading.current_thread()]  # CliRunner invokes the command on this thread
    assert "finished at step 4 of 4" in result.output and "4/4" in result.output


@pytest.mark.parametrize("bad", ["max_stepz=3", "max_steps=abc", "schedule=weird"])
def test_bad_keys_and_values_are_one_line_errors(tmp_path, bad: str) -> None:
    result = runner.invoke(app, _args(tmp_path) + ["--set", bad])
    assert isinstance(result.exception, ConfigError)
    assert "\n" not in str(result.exception) and bad.split("=")[0] in str(result.exception)


def test_stage_recipes_start_finetuning_gentler_than_pretraining() -> None:
    from llm_core.training import stage_config

    pre, sft, sft_lora = stage_config("pretrain"), stage_config("sft"), stage_config("sft", adapter="lora")
    dpo = stage_config("dpo", beta=0.3)
    assert pre == TrainConfig()  # the pretraining recipe is the defaults themselves
    assert (sft.stage, dpo.stage, dpo.beta) == ("sft", "dpo", 0.3)
    assert dpo.peak_lr < sft.peak_lr < pre.peak_lr and sft.max_steps < pre.max_steps
    assert sft_lora.peak_lr > sft.peak_lr and sft_lora.adapter == "lora"
    with pytest.raises(WorkbenchError, match="stage.*'rlhf'"):
        stage_config("rlhf")
