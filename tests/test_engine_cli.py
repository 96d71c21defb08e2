"""`workbench chat` / `workbench eval` end to end on a tiny random model (checkpoint loading faked)."""
from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from typer.testing import CliRunner

from engine_fakes import ByteTokenizer, tiny_model
from workbench.cli import app
from workbench.commands import chat as chat_cmd
from workbench.commands import eval as eval_cmd


@pytest.fixture
def fake_checkpoint(monkeypatch, tmp_path):
    loaded = SimpleNamespace(model=tiny_model(context_length=32, seed=5), tokenizer=ByteTokenizer(),
                             path=tmp_path / "step-00000007", step=7)
    loaded.path.mkdir()
    monkeypatch.setattr(chat_cmd, "_load", lambda path: loaded)
    monkeypatch.setattr(eval_cmd, "_load", lambda path: loaded)
    return loaded


def test_chat_modes_through_stdin(fake_checkpoint):
    runner = CliRunner()
    out = runner.invoke(app, ["chat", "-c", "x", "--max-new-tokens", "4"], input="hello\n\nworld\n")
    assert out.exit_code == 0, out.output
    assert out.output.count("note: prompt is") == 2  # Alpaca prompt > 32-token context: truncated, and said so
    out = runner.invoke(app, ["chat", "-c", "x", "--mode", "cot", "--max-new-tokens", "4"], input="2 + 3?\n")
    assert out.exit_code == 0 and "reasoning:" in out.output and "answer:" in out.output
    out = runner.invoke(app, ["chat", "-c", "x", "--mode", "vote", "--n", "3", "--max-new-tokens", "4"],
                        input="2 + 3?\n")
    assert out.exit_code == 0 and "votes:" in out.output and "saved by early stop" in out.output


@pytest.mark.parametrize("args,match", [
    (["--temperature", "-1"], "temperature"),
    (["--top-p", "1.5"], "top_p"),
    (["--mode", "vote", "--n", "0"], "--n"),
    (["--mode", "beam"], "--mode"),
])
def test_chat_bad_options_are_one_line_errors(fake_checkpoint, args, match):
    out = CliRunner().invoke(app, ["chat", "-c", "x", *args], input="hi\n")
    assert out.exit_code != 0
    assert match in str(out.exception)  # main() prints it as "error: ..." (WorkbenchError)


def test_eval_prints_table(fake_checkpoint, tmp_path):
    data = tmp_path / "eval.json"
    data.write_text(json.dumps([{"question": "Tom has 3 apples.", "answer": 3},
                                {"question": "Ann has 5 pens.", "answer": 5}]))
    out = CliRunner().invoke(app, ["eval", "-c", "x", "--data", str(data), "--n", "1,2",
                                   "--max-new-tokens", "3"])
    assert out.exit_code == 0, out.output
    for label in ("direct answer", "chain of thought", "majority vote (CoT)", "tokens/question"):
        assert label in out.output
    assert len([l for l in out.output.splitlines() if "majority vote" in l]) == 2
    saved = json.loads((fake_checkpoint.path / "evaluation.json").read_text())  # for `workbench report`
    assert (saved["step"], saved["problems"], [r["n"] for r in saved["rows"]]) == (7, 2, [1, 1, 1, 2])
    assert all(0.0 <= r["accuracy"] <= 1.0 for r in saved["rows"])


def test_chat_survives_invalid_utf8_on_stdin(fake_checkpoint):
    out = CliRunner().invoke(app, ["chat", "-c", "x", "--max-new-tokens", "2"], input=b"\xff\xfe hi \xc3\n2+2?\n")
    assert out.exit_code == 0, out.output
    assert out.exception is None and out.output.count("\n") >= 2  # both lines answered
