"""The distill stage through the Trainer on tiny models: kd_loss / ce_loss on every step line, text and
instruction data, exact resume, the teacher frozen, a tokenizer mismatch refused in one line."""
from __future__ import annotations

import json

import pytest
import torch

from llm_core.bpe import save_bpe, train_bpe
from llm_core.errors import ConfigError
from llm_core.training import Trainer, read_metrics
from llm_core.training.stages import dataset_kind
from training_helpers import corpus, tiny_config

STUDENT = dict(d_model=16, n_layers=1, n_heads=2)


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory):
    """A 6-step teacher run (its final checkpoint is the teacher), with room for an Alpaca prompt."""
    tmp = tmp_path_factory.mktemp("teacher")
    corpus(tmp / "corpus.txt", n_chars=2400)
    trainer = Trainer(tiny_config(tmp, name="teacher", context_length=192, stride=16))
    assert trainer.run()["reason"] == "finished"
    return trainer.run_dir


def distill_config(tmp_path, teacher_dir, **overrides):
    return tiny_config(tmp_path, **{"stage": "distill", "teacher": str(teacher_dir), **STUDENT, **overrides})


def steps_of(run_dir):
    return [e for e in read_metrics(run_dir) if e["type"] == "step"]


def test_every_step_line_has_kd_and_ce_loss(tmp_path, teacher_dir) -> None:
    trainer = Trainer(distill_config(tmp_path, teacher_dir, name="kd", kd_alpha=0.7, kd_temperature=2.0))
    assert trainer.run()["reason"] == "finished"
    steps = steps_of(trainer.run_dir)
    assert len(steps) == 6
    for e in steps:
        assert {"kd_loss", "ce_loss", "kd_temperature"} <= set(e)
        assert e["kd_loss"] > 0 and e["ce_loss"] > 0
        assert e["loss"] == pytest.approx(0.7 * e["kd_loss"] + 0.3 * e["ce_loss"], rel=1e-5)
    # The teacher stayed frozen: eval mode, no gradients, weights as loaded.
    teacher = trainer.objective.teacher
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())
    assert all(p.grad is None for p in teacher.parameters())
    assert trainer.model.num_parameters() < teacher.num_parameters()


def test_instruction_data_trains_on_response_tokens(tmp_path, teacher_dir) -> None:
    records = [{"instruction": f"say {w}", "input": "", "output": f"{w} {w}"}
               for w in ["cat", "dog", "mat", "sat", "ran", "far", "the", "and"]]
    data = tmp_path / "instructions.json"
    data.write_text(json.dumps(records))
    config = distill_config(tmp_path, teacher_dir, name="sft-kd", data=str(data), batch_size=2, max_steps=3,
                            context_length=192)
    assert dataset_kind("distill", config.data) == "instruction"
    trainer = Trainer(config)
    assert trainer.run()["reason"] == "finished"
    assert all(e["kd_loss"] >= 0 and e["ce_loss"] > 0 for e in steps_of(trainer.run_dir))
    assert dataset_kind("distill", "arith") == "text" and dataset_kind("distill", "a.txt") == "text"


def test_distill_run_resumes_exactly(tmp_path, teacher_dir) -> None:
    full = Trainer(distill_config(tmp_path, teacher_dir, name="full", kd_reverse=True))
    full.run()
    part = Trainer(distill_config(tmp_path, teacher_dir, name="part", kd_reverse=True))
    part.subscribe(lambda e: e["type"] == "step" and e["step"] == 2 and part.stop())
    assert part.run()["reason"] == "stopped" and part.step == 3
    resumed = Trainer.resume(part.run_dir)  # student, optimizer, data, and the teacher rebuilt from config.json
    assert resumed.step == 3 and resumed.run()["reason"] == "finished"

    def lines(run):
        return [(e["step"], e["loss"], e["kd_loss"], e["ce_loss"]) for e in steps_of(run)]

    assert lines(part.run_dir) == lines(full.run_dir)  # equality, not closeness
    for (name, a), b in zip(full.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), name


def test_live_temperature_change_is_recorded(tmp_path, teacher_dir) -> None:
    trainer = Trainer(distill_config(tmp_path, teacher_dir, name="live", max_steps=3))
    trainer.subscribe(lambda e: e["type"] == "step" and e["step"] == 0 and trainer.set_tunable("kd_temperature", 4.0))
    trainer.run()
    temps = [e["kd_temperature"] for e in steps_of(trainer.run_dir)]
    assert temps[0] == 2.0 and temps[-1] == 4.0


def test_tokenizer_mismatch_is_refused_naming_both(tmp_path, teacher_dir) -> None:
    # Same vocabulary size (259), different merges: the ids mean different tokens.
    other = tmp_path / "other-tok"
    save_bpe(train_bpe(["zqzqzqzq zqzq xjxjxj"], vocab_size=259), other)
    teacher_tok = tmp_path / "teacher-tok"
    save_bpe(train_bpe(["the cat sat on the mat"], vocab_size=259), teacher_tok)
    teacher = Trainer(tiny_config(tmp_path / "t", name="teacher259", tokenizer=str(teacher_tok), max_steps=2))
    teacher.run()
    with pytest.raises(ConfigError) as err:
        Trainer(distill_config(tmp_path, teacher.run_dir, name="mismatch", tokenizer=str(other)))
    message = str(err.value)
    assert "\n" not in message and str(other) in message and str(teacher.run_dir / "tokenizer") in message
    assert "differ" in message


def test_bad_distill_settings_are_one_line_errors(tmp_path, teacher_dir) -> None:
    for overrides, field in [(dict(teacher=None), "teacher"), (dict(kd_alpha=1.5), "kd_alpha"),
                             (dict(kd_temperature=0.0), "kd_temperature"), (dict(distill_mode="bogus"), "distill_mode")]:
        with pytest.raises(ConfigError) as err:
            distill_config(tmp_path, teacher_dir, **overrides)
        assert err.value.field == field and "\n" not in str(err.value)
