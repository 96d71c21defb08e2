"""`workbench export`: a trained checkpoint to the Hugging Face format (adapters merged) or adapters alone."""
import pytest
import torch
from typer.testing import CliRunner

from llm_core import GPT
from llm_core.errors import CheckpointError
from llm_core.adapters import load_adapters
from llm_core.training import Trainer, load_checkpoint
from training_helpers import tiny_config
from workbench.cli import app


def _train(tmp_path, **overrides):
    trainer = Trainer(tiny_config(tmp_path, max_steps=2, **overrides))
    trainer.run()
    return trainer.run_dir


def test_export_hf_round_trips_logits_with_adapters_merged(tmp_path):
    run = _train(tmp_path, adapter="lora", lora_rank=2, name="lora")
    out = tmp_path / "hf"
    result = CliRunner().invoke(app, ["export", "-c", str(run), "--hf", str(out)])
    assert result.exit_code == 0, result.output
    original = load_checkpoint(run).model
    exported = GPT.from_hf(out).eval()
    idx = torch.randint(0, 257, (1, 12), generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(exported(idx), original(idx), atol=1e-5, rtol=1e-5)


def test_export_adapters_reload_on_their_base_and_only_there(tmp_path):
    run = _train(tmp_path, adapter="dora", lora_rank=2, name="dora")
    out = tmp_path / "adapters"
    result = CliRunner().invoke(app, ["export", "-c", str(run), "--adapters", str(out)])
    assert result.exit_code == 0, result.output
    assert (out / "adapter.safetensors").is_file() and (out / "adapter.json").is_file()
    trained = load_checkpoint(run).model
    idx = torch.randint(0, 257, (1, 12), generator=torch.Generator().manual_seed(1))
    expected = trained(idx)
    load_adapters(trained, out)  # same base weights: accepted, outputs unchanged
    torch.testing.assert_close(trained(idx), expected)
    other_base = GPT(trained.config)  # different (fresh) base weights
    with pytest.raises(CheckpointError, match="base"):
        load_adapters(other_base, out)


def test_export_refuses_bad_requests(tmp_path):
    run = _train(tmp_path, name="plain")
    runner = CliRunner()
    both = runner.invoke(app, ["export", "-c", str(run)])
    assert both.exit_code != 0 and "exactly one of --hf DIR or --adapters DIR" in str(both.exception or both.output)
    none = runner.invoke(app, ["export", "-c", str(run), "--adapters", str(tmp_path / "a")])
    assert "has no adapters to export" in str(none.exception or none.output)
    missing = runner.invoke(app, ["export", "-c", str(tmp_path / "nope"), "--hf", str(tmp_path / "h")])
    assert "no such run folder or checkpoint" in str(missing.exception or missing.output)
