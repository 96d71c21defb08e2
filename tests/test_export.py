"""`workbench export`: a trained checkpoint to the Hugging Face format (adapters merged) or adapters alone."""
import json

import pytest
import torch
from typer.testing import CliRunner

from llm_core import GPT, load_tokenizer
from llm_core.errors import CheckpointError
from llm_core.adapters import load_adapters
from llm_core.experiment import default_paths
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
    result = CliRunner().invoke(app, ["export", str(run), "--hf", str(out)])
    assert result.exit_code == 0, result.output
    original = load_checkpoint(run).model
    exported = GPT.from_hf(out).eval()
    idx = torch.randint(0, 257, (1, 12), generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(exported(idx), original(idx), atol=1e-5, rtol=1e-5)


def test_export_adapters_reload_on_their_base_and_only_there(tmp_path):
    run = _train(tmp_path, adapter="dora", lora_rank=2, name="dora")
    out = tmp_path / "adapters"
    result = CliRunner().invoke(app, ["export", str(run), "--adapters", str(out)])
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
    both = runner.invoke(app, ["export", str(run)])
    assert both.exit_code != 0 and "exactly one of --hf DIR or --adapters DIR" in str(both.exception or both.output)
    none = runner.invoke(app, ["export", str(run), "--adapters", str(tmp_path / "a")])
    assert "has no adapters to export" in str(none.exception or none.output)
    missing = runner.invoke(app, ["export", str(tmp_path / "nope"), "--hf", str(tmp_path / "h")])
    assert "no such run folder or checkpoint" in str(missing.exception or missing.output)


def test_export_hf_is_complete_and_imports_back(tmp_path):
    transformers = pytest.importorskip("transformers")
    arith = default_paths()["tokenizer"]
    run = _train(tmp_path, tokenizer=str(arith), name="arith")
    out = tmp_path / "hf"
    result = CliRunner().invoke(app, ["export", str(run), "--hf", str(out)])
    assert result.exit_code == 0, result.output
    tok = load_tokenizer(arith)
    for name in ("config.json", "generation_config.json", "model.safetensors", "tokenizer.json",
                 "tokenizer_config.json", "special_tokens_map.json"):
        assert name in result.output and (out / name).is_file()
    assert f"eos = bos = pad = {tok.eot_id}" in result.output
    assert json.loads((out / "generation_config.json").read_text())["eos_token_id"] == tok.eot_id
    text = "Ann has 40 pens. She gives away 17. 40 - 17 = 23"
    hf_tok = transformers.AutoTokenizer.from_pretrained(out)
    assert hf_tok(text)["input_ids"] == tok.encode(text)
    # Back in: model and tokenizer from the folder, as a checkpoint anything that takes CKPT can use.
    loaded = load_checkpoint(out)
    assert loaded.tokenizer.encode(text) == tok.encode(text) and loaded.tokenizer.eot_id == tok.eot_id
    idx = torch.tensor([tok.encode(text)[:16]])
    torch.testing.assert_close(loaded.model(idx), load_checkpoint(run).model(idx), atol=1e-6, rtol=1e-6)
    # init_from an exported folder: the new run trains from its weights and keeps its tokenizer.
    trainer = Trainer(tiny_config(tmp_path, max_steps=1, warmup_steps=0, init_from=str(out), tokenizer="auto",
                                      name="from-hf"))
    trainer.run()
    again = load_tokenizer(trainer.run_dir / "tokenizer")
    assert (trainer.run_dir / "tokenizer" / "workbench_tokenizer.json").is_file()
    assert again.encoding._mergeable_ranks == tok.encoding._mergeable_ranks


def test_old_run_folders_with_tokenizer_json_still_load_and_export(tmp_path):
    run = _train(tmp_path, name="old")
    folder = run / "tokenizer"
    (folder / "workbench_tokenizer.json").rename(folder / "tokenizer.json")  # the name before the rename
    loaded = load_checkpoint(run)
    assert loaded.tokenizer.encode("the cat") == list(b"the cat")
    out = tmp_path / "hf"
    result = CliRunner().invoke(app, ["export", str(run), "--hf", str(out)])
    assert result.exit_code == 0, result.output
    assert load_checkpoint(out).tokenizer.encode("the cat") == list(b"the cat")


def test_a_bad_hf_folder_is_one_line_naming_the_file(tmp_path):
    run = _train(tmp_path, name="plain")
    out = tmp_path / "hf"
    assert CliRunner().invoke(app, ["export", str(run), "--hf", str(out)]).exit_code == 0
    data = json.loads((out / "tokenizer.json").read_text())
    (out / "tokenizer.json").write_text(json.dumps({**data, "model": {**data["model"], "type": "Unigram"}}))
    bad = CliRunner().invoke(app, ["export", str(out), "--hf", str(tmp_path / "again")])  # CKPT may be HF too
    assert bad.exit_code != 0
    message = str(bad.exception)
    assert "\n" not in message and "tokenizer.json: model type 'Unigram' is not supported" in message
    (out / "tokenizer.json").unlink()
    missing = CliRunner().invoke(app, ["chat", "-c", str(out)], input="hi\n")
    assert missing.exit_code != 0 and "tokenizer.json: file not found" in str(missing.exception or missing.output)
