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
    out = runner.invoke(app, ["chat", "-c", "x", "--mode", "beam", "--width", "3", "--max-new-tokens", "4"],
                        input="2 + 3?\n")
    assert out.exit_code == 0 and "beams (3, " in out.output and "answer:" in out.output
    out = runner.invoke(app, ["chat", "-c", "x", "--mode", "best", "--n", "3", "--max-new-tokens", "4"],
                        input="2 + 3?\n")
    assert out.exit_code == 0 and "scored samples (3, " in out.output and out.output.count("<- kept") == 1


@pytest.mark.parametrize("args,match", [
    (["--temperature", "-1"], "temperature"),
    (["--top-p", "1.5"], "top_p"),
    (["--mode", "vote", "--n", "0"], "--n"),
    (["--mode", "beam", "--width", "0"], "width"),
    (["--mode", "best", "--scorer", "oracle"], "scorer"),
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
    assert (saved["step"], saved["problems"], [r["n"] for r in saved["rows"]]) == (7, 2, [1, 1, 1, 2, 1])
    assert saved["rows"][-1]["method"] == "neutral prompt (greedy)" and saved["paraphrase_problems"] == 0
    assert all(0.0 <= r["accuracy"] <= 1.0 for r in saved["rows"])


def test_eval_reports_the_paraphrase_set_and_neutral_prompts(fake_checkpoint, tmp_path):
    data, para = tmp_path / "eval.json", tmp_path / "eval_paraphrase.json"
    data.write_text(json.dumps([{"question": "Tom has 3 apples.", "answer": 3}]))
    para.write_text(json.dumps([{"question": "Ann begins with 5 pens.", "answer": 5},
                                {"question": "Sam begins with 4 pens.", "answer": 4}]))
    out = CliRunner().invoke(app, ["eval", "-c", "x", "--data", str(data), "--paraphrase", str(para),
                                   "--n", "1", "--max-new-tokens", "3"])
    assert out.exit_code == 0, out.output
    saved = json.loads((fake_checkpoint.path / "evaluation.json").read_text())
    methods = [r["method"] for r in saved["rows"]]
    assert methods == ["direct answer (greedy)", "chain of thought (greedy)", "majority vote (CoT)",
                       "neutral prompt (greedy)", "paraphrase: direct (greedy)", "paraphrase: CoT (greedy)",
                       "paraphrase: neutral (greedy)"]
    assert saved["paraphrase_problems"] == 2
    assert [r["problems"] for r in saved["rows"][3:]] == [1, 2, 2, 2]
    assert all(0.0 <= r["step_by_step_share"] <= 1.0 for r in saved["rows"][3:])
    assert "paraphrase: CoT (greedy)" in out.output and "step by step:" in out.output


def test_eval_search_rows_plot_and_report(fake_checkpoint, tmp_path):
    from workbench.commands.report import evaluation_tables
    from workbench.commands.eval_search import search_lines

    data = tmp_path / "eval.json"
    data.write_text(json.dumps([{"question": "Tom has 3 apples.", "answer": 3}]))
    out = CliRunner().invoke(app, ["eval", "-c", "x", "--data", str(data), "--n", "1,2", "--max-new-tokens", "3",
                                   "--search", "--temperatures", "0.5,1", "--widths", "2"])
    assert out.exit_code == 0, out.output
    for label in ("beam search", "best-of-N (verifier) T=0.5", "weighted vote (verifier) T=1", "pass@N",
                  "accuracy vs tokens per question"):
        assert label in out.output
    saved = json.loads((fake_checkpoint.path / "evaluation.json").read_text())
    assert len(saved["search"]) == 1 + 1 + 2 * 2 * 3
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    fake_checkpoint.path.rename(run / "checkpoints" / fake_checkpoint.path.name)
    tables = evaluation_tables(run)
    markdown = "\n".join(search_lines(tables[0]["search"], markdown=True))
    assert "| beam search | 2 |" in markdown and "```" in markdown


def test_eval_search_bad_lists_are_one_line_errors(fake_checkpoint, tmp_path):
    data = tmp_path / "eval.json"
    data.write_text(json.dumps([{"question": "Tom has 3 apples.", "answer": 3}]))
    out = CliRunner().invoke(app, ["eval", "-c", "x", "--data", str(data), "--n", "1", "--max-new-tokens", "2",
                                   "--search", "--widths", "0"])
    assert out.exit_code != 0 and "widths: every value must be an integer >= 1" in str(out.exception)
    for scorer, message in (("oracle", "unknown scorer 'oracle'"), (f"model:{tmp_path / 'no-rm'}", "no-rm")):
        out = CliRunner().invoke(app, ["eval", "-c", "x", "--data", str(data), "--n", "1", "--max-new-tokens", "2",
                                       "--search", "--scorer", scorer])
        assert out.exit_code != 0 and message in str(out.exception) and "\n" not in str(out.exception)
        assert "direct answer" not in out.output  # refused before the table ran


def test_chat_survives_invalid_utf8_on_stdin(fake_checkpoint):
    out = CliRunner().invoke(app, ["chat", "-c", "x", "--max-new-tokens", "2"], input=b"\xff\xfe hi \xc3\n2+2?\n")
    assert out.exit_code == 0, out.output
    assert out.exception is None and out.output.count("\n") >= 2  # both lines answered
