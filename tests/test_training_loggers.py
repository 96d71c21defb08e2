"""Experiment trackers (llm_core.training.loggers): CSV, TensorBoard and W&B get metrics.jsonl's scalars.

Every tracker is read back with its own reader (Python's csv module, TensorBoard's EventAccumulator, W&B's
protobuf records) and compared with the run's metrics.jsonl, step by step.
"""
from __future__ import annotations

import csv
import json
import struct
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from llm_core import ConfigError, GPT, GPTConfig, TrainConfig, Trainer
from llm_core.data import collate_preference
from llm_core.training import read_metrics
from llm_core.training.loggers import LOGGERS, LoggerSpec, RunStart, build_loggers, register_logger, scalars
from llm_core.training.loggers.wandb_logger import wandb_mode
from training_helpers import tiny_config
from test_dpo_training import preference_items
from test_rl_training import rl_config
from workbench.cli import app

PREFIX = {"step": "train", "eval": "eval"}


def _events(run_dir: Path, kind: str) -> list[dict]:
    return [e for e in read_metrics(run_dir) if e["type"] == kind]


def _csv_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _assert_csv_matches(run_dir: Path) -> None:
    """metrics.csv / eval_metrics.csv hold exactly the step / eval events of metrics.jsonl, value for value."""
    for kind, name in (("step", "metrics.csv"), ("eval", "eval_metrics.csv")):
        events, rows = _events(run_dir, kind), _csv_rows(run_dir / name)
        assert [int(r["step"]) for r in rows] == [e["step"] for e in events]
        for event, row in zip(events, rows):
            expected = scalars(event)
            assert {k for k, v in row.items() if v != "" and k != "step"} == set(expected)
            for key, value in expected.items():
                assert float(row[key]) == value, (kind, event["step"], key)  # repr round-trips floats exactly


def _tensorboard_scalars(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"scalars": 0})  # 0 = keep all
    acc.Reload()
    return {tag: [(s.step, s.value) for s in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def _assert_tensorboard_matches(run_dir: Path) -> None:
    """Every scalar of every step and eval event is in TensorBoard once, at its step (as float32)."""
    logged = _tensorboard_scalars(run_dir)
    expected: dict[str, list[tuple[int, float]]] = {}
    for event in read_metrics(run_dir):
        if event["type"] in PREFIX:
            for key, value in scalars(event).items():
                expected.setdefault(f"{PREFIX[event['type']]}/{key}", []).append((event["step"], value))
    assert set(logged) == set(expected)
    for tag, points in expected.items():
        assert [s for s, _ in logged[tag]] == [s for s, _ in points], tag
        assert [v for _, v in logged[tag]] == [float(np.float32(v)) for _, v in points], tag


# --- config ----------------------------------------------------------------------------------------
def test_loggers_config_field_names_and_parsing() -> None:
    assert TrainConfig().loggers == ()  # the default: metrics.jsonl only
    assert TrainConfig().with_overrides(["loggers=csv,tensorboard,wandb"]).loggers == ("csv", "tensorboard", "wandb")
    assert TrainConfig(loggers=["csv", "csv"]).loggers == ("csv",)
    assert TrainConfig().with_overrides(["loggers=none"]).loggers == ()
    round_trip = TrainConfig.from_dict(json.loads(json.dumps(TrainConfig(loggers=("csv",)).to_dict())))
    assert round_trip.loggers == ("csv",)
    with pytest.raises(ConfigError, match=r"TrainConfig\.loggers: unknown logger 'mlflow' \(known: csv, "
                                          r"tensorboard, wandb") as info:
        TrainConfig().with_overrides(["loggers=csv,mlflow"])
    assert "\n" not in str(info.value) and info.value.field == "loggers"
    with pytest.raises(ConfigError, match="loggers: must be a list"):
        TrainConfig(loggers="csv")


@pytest.mark.parametrize("name,package", [("tensorboard", "tensorboard"), ("wandb", "wandb")])
def test_missing_package_is_one_line_error_before_anything_is_written(tmp_path, monkeypatch, name, package) -> None:
    monkeypatch.setitem(sys.modules, package, None)  # import fails as if it were not installed
    config = tiny_config(tmp_path, loggers=("csv", name), name="r")  # names alone are fine at config time
    message = f"loggers: {name} needs the package '{package}': pip install 'llm-workbench[{name}]'"
    with pytest.raises(ConfigError) as info:
        Trainer(config)
    assert str(info.value) == message
    assert not (tmp_path / "runs").exists()  # refused before the run folder
    args = ["train", "--set", f"data={config.data}", "--set", f"tokenizer={config.tokenizer}", "--set",
            "model=tiny", "--set", "d_model=32", "--set", "n_layers=2", "--set", "n_heads=2", "--set",
            "context_length=16", "--set", "device=cpu", "--set", f"loggers={name}", "--out", str(tmp_path / "cli")]
    result = CliRunner().invoke(app, args)
    assert isinstance(result.exception, ConfigError) and str(result.exception) == message
    assert not (tmp_path / "cli").exists()


def test_scalars_flatten_numbers_and_drop_the_rest() -> None:
    event = {"type": "eval", "step": 4, "val_loss": 1.5, "train_loss": None, "clipped": True, "tokens": 12,
             "sample": "text", "layer_grad_norms": {"a": 0.5, "b": float("nan")}, "expert_load": [0.25, 0.75]}
    assert scalars(event) == {"val_loss": 1.5, "clipped": 1, "tokens": 12, "layer_grad_norms/a": 0.5,
                              "expert_load/0": 0.25, "expert_load/1": 0.75}


# --- CSV + TensorBoard against metrics.jsonl --------------------------------------------------------
def test_csv_and_tensorboard_get_the_scalars_of_metrics_jsonl(tmp_path) -> None:
    pytest.importorskip("tensorboard")
    # MoE on: a list metric (expert_load) and a stage scalar (aux_loss) beyond the base step fields.
    trainer = Trainer(tiny_config(tmp_path, loggers=("csv", "tensorboard"), name="r", moe_experts=2,
                                  moe_top_k=1, checkpoint_every=3))
    assert trainer.run()["reason"] == "finished"
    run_dir = trainer.run_dir
    header = _csv_rows(run_dir / "metrics.csv")[0].keys()
    assert list(header)[:9] == ["step", "epoch", "lr", "loss", "grad_norm", "clipped", "tokens", "tokens_per_s",
                                "elapsed"]  # the schema's order (events.StepEvent), then the stage's keys
    assert {"aux_loss", "expert_load/0", "expert_load/1"} <= set(header)
    assert "val_loss" in _csv_rows(run_dir / "eval_metrics.csv")[0]
    _assert_csv_matches(run_dir)
    _assert_tensorboard_matches(run_dir)
    tags = _tensorboard_scalars(run_dir)
    assert {"train/loss", "train/lr", "train/grad_norm", "train/tokens_per_s", "eval/val_loss"} <= set(tags)


def test_resume_appends_each_step_once_to_csv_and_tensorboard(tmp_path) -> None:
    pytest.importorskip("tensorboard")
    first = Trainer(tiny_config(tmp_path, loggers=("csv", "tensorboard"), name="r", checkpoint_every=2))
    first.run()  # checkpoints at steps 2, 4 and 6; steps 0..5 logged
    first_rows = _csv_rows(first.run_dir / "metrics.csv")
    resumed = Trainer.resume(first.run_dir / "checkpoints" / "step-00000004")  # as if it died after step 4
    assert resumed.step == 4
    resumed.run()  # steps 4 and 5 again (elapsed and tokens/s differ from the first session's)
    rows = _csv_rows(first.run_dir / "metrics.csv")
    assert [int(r["step"]) for r in rows] == list(range(6))
    assert rows[:4] == first_rows[:4] and rows[4]["elapsed"] != first_rows[4]["elapsed"]
    _assert_csv_matches(first.run_dir)  # metrics.jsonl was truncated the same way: the same rows
    _assert_tensorboard_matches(first.run_dir)  # the first session's steps 4, 5 purged: each step once


def test_dpo_margins_reach_the_trackers(tmp_path) -> None:
    pytest.importorskip("tensorboard")
    model = GPT(GPTConfig(vocab_size=23, context_length=16, d_model=16, n_layers=1, n_heads=2))
    config = TrainConfig(stage="dpo", data="in-memory", max_steps=4, batch_size=4, warmup_steps=1, eval_every=2,
                         eval_batches=1, sample_tokens=0, bf16=False, device="cpu", out=str(tmp_path), name="dpo",
                         loggers=("csv", "tensorboard"))
    trainer = Trainer(config, model=model, train_data=preference_items(8, seed=1),
                      val_data=preference_items(4, seed=2), collate_fn=lambda b: collate_preference(b, pad_id=0))
    trainer.run()
    assert {"reward_margin", "reward_accuracy", "beta"} <= set(_csv_rows(trainer.run_dir / "metrics.csv")[0])
    assert "val_reward_margin" in _csv_rows(trainer.run_dir / "eval_metrics.csv")[0]
    _assert_csv_matches(trainer.run_dir)
    _assert_tensorboard_matches(trainer.run_dir)


def test_rl_rewards_and_greedy_accuracy_reach_the_trackers(tmp_path) -> None:
    pytest.importorskip("tensorboard")
    trainer = Trainer(rl_config(tmp_path, name="rl", loggers=("csv", "tensorboard")))
    trainer.run()
    assert {"reward_mean", "accuracy", "kl", "completion_length"} <= set(_csv_rows(trainer.run_dir / "metrics.csv")[0])
    assert "eval_neutral_accuracy" in _csv_rows(trainer.run_dir / "eval_metrics.csv")[0]
    _assert_csv_matches(trainer.run_dir)
    _assert_tensorboard_matches(trainer.run_dir)


def test_a_key_first_seen_mid_run_widens_the_csv_header(tmp_path) -> None:
    trainer = Trainer(tiny_config(tmp_path, loggers=("csv",), name="r", log_every=1))
    trainer.subscribe(lambda e: e["type"] == "step" and e["step"] == 2 and trainer.set_lr_scale(0.5))
    trainer.run()
    rows = _csv_rows(trainer.run_dir / "metrics.csv")
    assert [r["lr_scale"] for r in rows] == ["", "", "", "0.5", "0.5", "0.5"]
    _assert_csv_matches(trainer.run_dir)


# --- lifecycle: one place, clean close, interrupt ----------------------------------------------------
class Recorder:
    calls: list[tuple] = []

    def open(self, run: RunStart) -> None:
        Recorder.calls.append(("open", run.start_step, run.stage))

    def log(self, kind: str, step: int, values: dict) -> None:
        Recorder.calls.append((kind, step))

    def flush(self) -> None:
        Recorder.calls.append(("flush",))

    def close(self, failed: bool = False) -> None:
        Recorder.calls.append(("close", failed))


@pytest.fixture
def recorder():
    register_logger(LoggerSpec("recorder", Recorder, "memory"))
    Recorder.calls = []
    yield Recorder
    LOGGERS.pop("recorder")


def test_trackers_see_start_steps_checkpoints_and_one_clean_close(tmp_path, recorder) -> None:
    trainer = Trainer(tiny_config(tmp_path, loggers=("recorder",), checkpoint_every=3, log_every=2))
    trainer.run()
    logged = [c for c in recorder.calls if c[0] in ("step", "eval")]
    assert logged == [(e["type"], e["step"]) for e in read_metrics(trainer.run_dir) if e["type"] in PREFIX]
    assert recorder.calls[0] == ("open", 0, "pretrain")
    assert recorder.calls.count(("flush",)) == 2 and recorder.calls[-1] == ("close", False)
    assert [c for c in recorder.calls if c[0] == "close"] == [("close", False)]


def test_an_interrupted_run_closes_its_trackers_with_rows_on_disk(tmp_path, recorder) -> None:
    trainer = Trainer(tiny_config(tmp_path, loggers=("csv", "recorder"), log_every=1))

    def interrupt(event: dict) -> None:
        if event["type"] == "step" and event["step"] == 3:
            raise KeyboardInterrupt

    trainer.subscribe(interrupt)
    with pytest.raises(KeyboardInterrupt):
        trainer.run()
    assert recorder.calls[-1] == ("close", True)
    assert [int(r["step"]) for r in _csv_rows(trainer.run_dir / "metrics.csv")] == [0, 1, 2, 3]


def test_a_tracker_failing_to_close_fails_the_run_once(tmp_path, recorder, monkeypatch) -> None:
    def broken_close(self, failed: bool = False) -> None:
        raise ConfigError("recorder: cannot close")

    monkeypatch.setattr(Recorder, "close", broken_close)
    trainer = Trainer(tiny_config(tmp_path, loggers=("recorder",)))
    end = trainer.run()
    assert end["reason"] == "error" and end["message"] == "recorder: cannot close"
    assert [e["reason"] for e in _events(trainer.run_dir, "end")] == ["error"]


def test_build_loggers_keeps_the_configured_order(recorder) -> None:
    assert [type(x).__name__ for x in build_loggers(("recorder", "csv")).loggers] == ["Recorder", "CSVLogger"]


# --- Weights & Biases ---------------------------------------------------------------------------------
def _wandb_history(run_file: Path) -> dict[int, dict]:
    """{step: row} of an offline W&B run file. The file is a LevelDB-style log (W&B's header, then 32 KiB
    blocks of records with a 7-byte header: CRC32, length, type FULL/FIRST/MIDDLE/LAST); every record is a
    `wandb_internal_pb2.Record` protobuf, parsed here by W&B's own generated classes."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = run_file.read_bytes()
    assert data[:4] == b":W&B"
    pos, block, pending, history = 7, 32768, b"", {}
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a header is padding
            pos += block - pos % block
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        chunk, pos = data[pos + 7:pos + 7 + length], pos + 7 + length
        pending = chunk if kind in (1, 2) else pending + chunk
        if kind in (1, 4):  # FULL or LAST: a whole record
            record = pb.Record()
            record.ParseFromString(pending)
            if record.WhichOneof("record_type") == "history":
                row = {(i.key or "/".join(i.nested_key)): json.loads(i.value_json) for i in record.history.item}
                history[record.history.step.num] = row
    return history


@pytest.fixture
def wandb_env(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.delenv("WANDB_MODE", raising=False)
    for var in ("WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR", "WANDB_ARTIFACT_DIR"):
        monkeypatch.setenv(var, str(tmp_path / "wandb-home"))  # nothing written outside the test's folder


def test_wandb_offline_run_holds_the_scalars_of_metrics_jsonl(tmp_path, wandb_env) -> None:
    assert wandb_mode() == "offline"
    trainer = Trainer(tiny_config(tmp_path, loggers=("wandb",), name="r"))
    assert trainer.run()["reason"] == "finished"
    (run_file,) = (trainer.run_dir / "wandb").glob("offline-run-*/run-*.wandb")  # offline by default
    history = _wandb_history(run_file)
    events = [e for e in read_metrics(trainer.run_dir) if e["type"] in PREFIX]
    assert sorted(history) == sorted({e["step"] for e in events})
    for event in events:
        row = history[event["step"]]
        for key, value in scalars(event).items():
            assert row[f"{PREFIX[event['type']]}/{key}"] == value, (event["step"], key)


def test_wandb_respects_a_mode_the_user_set(tmp_path, wandb_env, monkeypatch) -> None:
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert wandb_mode() == "disabled"
    trainer = Trainer(tiny_config(tmp_path, loggers=("wandb",), name="r"))
    assert trainer.run()["reason"] == "finished"
    assert not list(trainer.run_dir.glob("wandb/offline-run-*"))


# --- CLI ------------------------------------------------------------------------------------------------
def test_cli_set_loggers_writes_the_csv(tmp_path) -> None:
    config = tiny_config(tmp_path)
    sets = dict(data=config.data, tokenizer=config.tokenizer, model="tiny", d_model=32, n_layers=2, n_heads=2,
                context_length=16, max_steps=3, batch_size=4, warmup_steps=1, eval_every=3, eval_batches=1,
                sample_tokens=0, bf16="false", device="cpu", name="cli", num_threads=1, loggers="csv")
    args = ["train", "--out", str(tmp_path / "runs"), "--estimate-steps", "0"]
    for k, v in sets.items():
        args += ["--set", f"{k}={v}"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "trackers: csv -> metrics.csv, eval_metrics.csv" in result.output
    run_dir = tmp_path / "runs" / "cli"
    assert json.loads((run_dir / "config.json").read_text())["loggers"] == ["csv"]
    _assert_csv_matches(run_dir)
