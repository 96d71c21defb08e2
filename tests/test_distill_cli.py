"""`workbench distill` through typer's CliRunner: a preset student gets the teacher's tokenizer, the
kd/ce lines print, the run resumes with `workbench train --resume`; bad students / modes are one line."""
from __future__ import annotations

from typer.testing import CliRunner

from llm_core.distill.recipe import distill_config
from llm_core.training import Trainer, read_metrics
from cli_helpers import plain
from training_helpers import tiny_config
from workbench.cli import app

runner = CliRunner()


def test_distill_cli_trains_a_preset_student_with_the_teachers_tokenizer(tmp_path) -> None:
    teacher = Trainer(tiny_config(tmp_path, name="teacher", max_steps=2, warmup_steps=0))
    teacher.run()
    sets = dict(data=tmp_path / "corpus.txt", d_model=16, n_layers=1, n_heads=2, context_length=16, max_steps=4,
                batch_size=4, warmup_steps=1, eval_every=2, eval_batches=1, sample_tokens=2, bf16="false",
                device="cpu", name="student", num_threads=1, kd_alpha=0.9)
    args = ["distill", "-c", str(teacher.run_dir), "--student", "tiny-student", "--mode", "logits",
            "--out", str(tmp_path / "runs"), "--estimate-steps", "0"]
    for k, v in sets.items():
        args += ["--set", f"{k}={v}"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "logits: T=2, alpha=0.9" in result.output and "kd_loss" in result.output and "ce_loss" in result.output
    run_dir = tmp_path / "runs" / "student"
    steps = [e for e in read_metrics(run_dir) if e["type"] == "step"]
    assert len(steps) == 4 and all("kd_loss" in e and "ce_loss" in e for e in steps)
    assert (run_dir / "tokenizer").is_dir()
    result = runner.invoke(app, ["train", "--resume", str(run_dir), "--set", "max_steps=5", "--estimate-steps", "0"])
    assert result.exit_code == 0, result.output
    assert [e["step"] for e in read_metrics(run_dir) if e["type"] == "step"] == list(range(5))


def test_bad_student_and_mode_are_one_line_errors(tmp_path) -> None:
    teacher = Trainer(tiny_config(tmp_path, name="teacher", max_steps=1, warmup_steps=0))
    teacher.run()
    result = runner.invoke(app, ["distill", "-c", str(teacher.run_dir), "--student", "nope"])
    assert result.exit_code != 0 and "neither a model preset" in str(result.exception)
    result = runner.invoke(app, ["distill", "-c", str(teacher.run_dir), "--mode", "soft"])
    assert result.exit_code == 2 and "'soft' is not one of 'logits', 'traces'" in plain(result.output)
    config = distill_config(str(teacher.run_dir), str(teacher.run_dir), max_steps=3)  # a checkpoint student
    assert config.init_from == str(teacher.run_dir) and config.model == "tiny-student" and config.tokenizer == "auto"
