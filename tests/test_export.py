"""`workbench export`: a trained checkpoint to the Hugging Face format (adapters merged), its adapters in the PEFT
format (and the base), and the adapter folder taken back by `chat --adapters` and `init_adapters`."""
import json
import warnings

import pytest
import torch
from typer.testing import CliRunner

from llm_core import GPT, load_tokenizer
from llm_core.adapters import load_peft_adapters
from llm_core.errors import CheckpointError, ConfigError
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
    result = CliRunner().invoke(app, ["export", "-c", str(run), "--hf", str(out)])
    assert result.exit_code == 0, result.output
    original = load_checkpoint(run).model
    exported = GPT.from_hf(out).eval()
    idx = torch.randint(0, 257, (1, 12), generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(exported(idx), original(idx), atol=1e-5, rtol=1e-5)


def test_export_base_and_adapters_for_peft_then_chat_and_train_from_them(tmp_path):
    """A DoRA run on top of a pretrained run: `export --hf --adapters` gives the base and a PEFT folder that
    peft loads with the run's logits; `chat --adapters` and `init_adapters` take the folder back."""
    peft = pytest.importorskip("peft")
    transformers = pytest.importorskip("transformers")
    base_run = _train(tmp_path, name="base")
    run = _train(tmp_path, adapter="dora", lora_rank=2, lora_alpha=4.0, init_from=str(base_run), name="dora")
    hf, out = tmp_path / "hf", tmp_path / "adapters"
    result = CliRunner().invoke(app, ["export", "-c", str(run), "--hf", str(hf), "--adapters", str(out)])
    assert result.exit_code == 0, result.output
    assert "adapters in the PEFT format" in result.output and "the base weights" in result.output
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == str(hf.resolve()) and config["use_dora"] and config["r"] == 2

    trained = load_checkpoint(run).model
    idx = torch.randint(0, 257, (1, 12), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = trained(idx)
        assert not torch.allclose(expected, load_checkpoint(base_run).model(idx), atol=1e-3)  # DoRA moved it
        # The exported base is the pretrained run the adapters were trained on (frozen during the DoRA run).
        torch.testing.assert_close(GPT.from_hf(hf)(idx), load_checkpoint(base_run).model(idx), atol=1e-5, rtol=1e-5)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            theirs = peft.PeftModel.from_pretrained(transformers.GPT2LMHeadModel.from_pretrained(hf), out).eval()
        torch.testing.assert_close(theirs(idx).logits, expected, atol=1e-5, rtol=1e-5)

    # Chat: the base checkpoint + the adapter folder answers as the DoRA run does (greedy, same text).
    runner = CliRunner()
    args = ["--max-new-tokens", "8"]
    direct = runner.invoke(app, ["chat", "-c", str(run), *args], input="the cat\n")
    via_folder = runner.invoke(app, ["chat", "-c", str(base_run), "--adapters", str(out), *args], input="the cat\n")
    assert direct.exit_code == 0 and via_folder.exit_code == 0, via_folder.output
    assert via_folder.output == direct.output
    assert runner.invoke(app, ["chat", "-c", str(base_run), *args], input="the cat\n").output != direct.output
    bad = runner.invoke(app, ["chat", "-c", str(base_run), "--adapters", str(tmp_path / "nope")], input="x\n")
    assert bad.exit_code != 0 and "adapter_config.json: file not found" in str(bad.exception)

    # Training from the folder: the adapters start where the DoRA run ended; rank/alpha/targets come from it.
    trainer = Trainer(tiny_config(tmp_path, max_steps=2, adapter="dora", init_from=str(base_run),
                                  init_adapters=str(out), name="continued"))
    assert (trainer.config.lora_rank, trainer.config.lora_alpha, trainer.config.adapter_targets) == (2, 4.0, "attn,mlp")
    with torch.no_grad():
        torch.testing.assert_close(trainer.model.eval()(idx), expected, atol=1e-6, rtol=1e-6)
    trainer.run()
    assert load_checkpoint(trainer.run_dir).model.adapter_config.rank == 2  # config.json rebuilds the modules
    with pytest.raises(ConfigError, match="TrainConfig.adapter: 'lora', but init_adapters .* holds dora adapters"):
        Trainer(tiny_config(tmp_path, adapter="lora", init_from=str(base_run), init_adapters=str(out), name="x"))
    with pytest.raises(ConfigError, match="init_adapters: needs adapter=lora or dora"):
        tiny_config(tmp_path, adapter="dora", init_adapters=str(out))
    # Adapters exported from the DoRA run do not go onto other base weights.
    with pytest.raises(CheckpointError, match="other base weights"):
        load_peft_adapters(GPT(trained.config), out)


def test_export_refuses_bad_requests(tmp_path):
    run = _train(tmp_path, name="plain")
    runner = CliRunner()
    both = runner.invoke(app, ["export", "-c", str(run)])
    assert both.exit_code != 0 and "give --hf DIR, --adapters DIR or both" in str(both.exception or both.output)
    none = runner.invoke(app, ["export", "-c", str(run), "--adapters", str(tmp_path / "a")])
    assert "has no adapters to export" in str(none.exception or none.output)
    missing = runner.invoke(app, ["export", "-c", str(tmp_path / "nope"), "--hf", str(tmp_path / "h")])
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
