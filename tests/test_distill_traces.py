"""Trace distillation: rejection sampling keeps only verified traces, the file is Alpaca JSON that the
instruction loader reads, the stats count what was sampled, and the student SFTs on it through the Trainer.

The teacher's sampling is scripted (a stand-in Engine returning chosen completions per problem), so the
test knows which completions are right, which have a wrong answer and which reach the right answer by a
wrong step; the real batched sampling path runs in the last test with a tiny random teacher."""
from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from llm_core.data import InstructionDataset
from llm_core.distill import traces as T
from llm_core.errors import DataError
from llm_core.experiment import default_paths
from llm_core.experiment.verifier import verify
from llm_core.rl.rewards import FunctionReward
from llm_core.tokenizer import load_tokenizer
from llm_core.training import Trainer, build_trainer, read_metrics
from training_helpers import tiny_config

ARITH_TOKENIZER = str(default_paths()["tokenizer"])


def problems(n: int = 3) -> list[dict]:
    records = json.loads(default_paths()["instructions"].read_text())
    worked = [r for r in records if r["output"].count("\n") >= 3][:n]  # two operations or more
    return [{**r, "answer": int(r["output"].rsplit(" ", 1)[-1].rstrip("."))} for r in worked]


def wrong_answer(output: str) -> str:
    head, _, last = output.rpartition("\n")
    return f"{head}\nThe answer is {int(last.split()[-1].rstrip('.')) + 1}."


def wrong_step(output: str) -> str:
    """The same final answer, one intermediate line's digit sum broken (the verifier must catch it)."""
    lines = output.split("\n")
    lines[1] = lines[1].replace("=", "=1", 1)
    return "\n".join(lines)


class ScriptedEngine:
    """Stands in for `Engine`: `sample_batch` yields the scripted completions of the prompt's problem."""

    script: dict[str, list[str]] = {}

    def __init__(self, model, tokenizer) -> None:
        self.tokenizer = tokenizer
        self.last_stats = SimpleNamespace(new_tokens=0)

    def sample_batch(self, ids, n, max_new_tokens, params):
        prompt = self.tokenizer.decode(ids)
        question = next(q for q in self.script if q in prompt)
        texts = self.script[question][:n]
        self.last_stats = SimpleNamespace(new_tokens=10 * len(texts))
        yield [(i, text, 10) for i, text in enumerate(texts)]


@pytest.fixture
def scripted(monkeypatch):
    records = problems()
    script = {}
    for r in records:
        question = r["instruction"].rsplit(" Think step by step.", 1)[0]
        good = r["output"]
        script[question] = [good, wrong_answer(good), wrong_step(good), good]  # 1 distinct verified of 4
    script[records[2]["instruction"].rsplit(" Think", 1)[0]] = [wrong_answer(records[2]["output"])] * 4  # none
    monkeypatch.setattr(ScriptedEngine, "script", script)
    monkeypatch.setattr(T, "Engine", ScriptedEngine)
    return records


def test_only_verified_traces_are_kept_and_counted(scripted) -> None:
    tok = load_tokenizer(ARITH_TOKENIZER)
    model = SimpleNamespace(config=SimpleNamespace(context_length=256))
    kept, stats = T.generate_traces(model, tok, scripted, n=4, seed=3)
    assert len(kept) == 2  # problems 0 and 1: the duplicate kept once; problem 2: nothing right
    for record, problem in zip(kept, scripted):
        assert record["output"] == problem["output"] and record["answer"] == problem["answer"]
        assert record["instruction"].endswith("Think step by step.")
        assert verify(record["output"], record["instruction"]).correct
    assert stats.sampled == 12 and stats.correct_answer == 6 and stats.verified == 4 and stats.kept == 2
    assert stats.acceptance_rate == pytest.approx(4 / 12)
    assert stats.traces_per_problem == {"0": 1, "1": 2} and stats.problems_with_trace == 2
    # Without the process check, the right answer reached by a wrong step gets in too.
    loose, loose_stats = T.generate_traces(model, tok, scripted, n=4, check_process=False)
    assert loose_stats.verified == 6 and any(r["output"] == wrong_step(scripted[0]["output"]) for r in loose)


def test_any_reward_can_do_the_rejection(scripted) -> None:
    tok = load_tokenizer(ARITH_TOKENIZER)
    model = SimpleNamespace(config=SimpleNamespace(context_length=256))
    never = FunctionReward(lambda prompt, completion, example: 0.0, name="never")
    kept, stats = T.generate_traces(model, tok, scripted, n=4, reward=never)
    assert kept == [] and stats.acceptance_rate == 0 and stats.settings["reward"] == "never"
    with pytest.raises(DataError, match="no verified trace"):
        T.write_traces("unused", kept, stats)


def test_trace_file_is_alpaca_json_that_the_loader_reads(tmp_path, scripted) -> None:
    tok = load_tokenizer(ARITH_TOKENIZER)
    model = SimpleNamespace(config=SimpleNamespace(context_length=256))
    kept, stats = T.generate_traces(model, tok, scripted, n=4)
    path = T.write_traces(tmp_path, kept, stats)
    records = json.loads(path.read_text())
    assert isinstance(records, list) and all({"instruction", "input", "output"} <= set(r) for r in records)
    assert all(isinstance(r[k], str) for r in records for k in ("instruction", "input", "output"))
    dataset = InstructionDataset(path, tok, max_length=256)
    assert len(dataset) == len(kept) == 2
    saved = json.loads((tmp_path / T.STATS_FILE).read_text())
    assert saved["acceptance_rate"] == pytest.approx(stats.acceptance_rate) and saved["traces_per_problem"]


def test_trace_distillation_sfts_the_student_in_the_run_folder(tmp_path, scripted) -> None:
    teacher = Trainer(tiny_config(tmp_path / "t", name="teacher", tokenizer=ARITH_TOKENIZER, context_length=192,
                                  max_steps=2, val_fraction=0.0, batch_size=2))
    teacher.run()
    data = tmp_path / "problems.json"
    data.write_text(json.dumps(scripted))
    config = tiny_config(tmp_path, name="traces", stage="distill", distill_mode="traces", teacher=str(teacher.run_dir),
                         tokenizer=ARITH_TOKENIZER, data=str(data), context_length=192, d_model=16, n_layers=1,
                         batch_size=1, max_steps=3, val_fraction=0.0, trace_samples=4)
    # build_trainer (what `workbench train`, `workbench distill` and the TUI call) does the same for this stage:
    # the teacher writes its traces first, so stage distill in traces mode is never trained on the raw data.
    trainer = build_trainer(config)
    assert trainer.config.data == str(trainer.run_dir / T.TRACES_FILE) and trainer.objective.teacher is None
    assert trainer.run()["reason"] == "finished"
    assert (trainer.run_dir / T.STATS_FILE).is_file()
    steps = [e for e in read_metrics(trainer.run_dir) if e["type"] == "step"]
    assert len(steps) == 3 and all(e["ce_loss"] == pytest.approx(e["loss"]) and e["kd_loss"] == 0 for e in steps)


def test_real_sampling_writes_stats_for_every_problem(tmp_path) -> None:
    """The real Engine path with a tiny random teacher: it fails every problem, and the stats say so."""
    teacher = Trainer(tiny_config(tmp_path, name="teacher", tokenizer=ARITH_TOKENIZER, context_length=160,
                                  max_steps=1, warmup_steps=0, val_fraction=0.0, batch_size=2))
    kept, stats = T.generate_traces(teacher.model, teacher.tokenizer, problems(2), n=2, max_new_tokens=8, seed=1)
    assert stats.sampled == 4 and stats.problems == 2 and stats.tokens_sampled > 0
    assert len(kept) == stats.kept <= stats.verified
