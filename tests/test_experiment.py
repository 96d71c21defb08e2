"""The embedded default experiment: generator, worked solutions, answer extraction, data build, CLI."""
from __future__ import annotations

import hashlib
import json
import random
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from llm_core.experiment import (
    COT_CUE,
    DATA_DIR,
    DIRECT_CUE,
    PARAPHRASE_BOOK,
    TRAIN_BOOK,
    default_paths,
    extract_answer,
    make_prompt,
    split_reasoning,
)
from llm_core.experiment.arithmetic import (
    ADD_VERBS,
    NAMES,
    OBJECTS,
    RELATIVES,
    SUB_VERBS,
    Problem,
    random_problem,
    rejected_solution,
    running_values,
    worked_solution,
)
from llm_core.experiment.build import DOCUMENT_SEPARATOR, BuildConfig, build_experiment, split_documents
from llm_core.data.preference import PreferenceDataset
from llm_core.errors import ConfigError
from llm_core.formatting import encode_example
from llm_core.io import read_text_file
from llm_core.model import GPTConfig
from llm_core.tokenizer import load_tokenizer

SMALL = BuildConfig(seed=3, n_pretrain=200, n_instructions=20, n_preferences=20, n_eval=20, n_paraphrase=20,
                    vocab_size=300)

# --- An independent checker of worked solutions ------------------------------------------------------
STEP_RE = re.compile(r"^(\d+)([+-])(\d+): (.*), so (\d+)\.(?: Now (\d+(?:[+-]\d+)+)\.)?$")
ADD_COL_RE = re.compile(r"^(\d)\+(\d)(\+1)?=(\d+)( c1)?$")
SUB_COL_RE = re.compile(r"^(\d)-(\d)(-1)?(?: b1 1(\d)-(\d)(-1)?)?=(\d)$")


def check_step(line: str) -> tuple[int, str, int, int]:
    """Parse one step line and check every column with plain integer arithmetic; returns (x, op, y, r)."""
    m = STEP_RE.match(line)
    assert m, line
    x, op, y = int(m[1]), m[2], int(m[3])
    result = int(m[5])
    assert result == (x + y if op == "+" else x - y), line
    columns = m[4].split(", ")
    xd, yd = str(x)[::-1], str(y)[::-1]
    carry, pieces = 0, []  # digits written by each column, ones first
    for i, col in enumerate(columns):
        dx = int(xd[i]) if i < len(xd) else 0
        dy = int(yd[i]) if i < len(yd) else 0
        last = i == len(columns) - 1
        if op == "+":
            c = ADD_COL_RE.match(col)
            assert c, col
            assert (int(c[1]), int(c[2]), bool(c[3])) == (dx, dy, bool(carry)), col
            total = dx + dy + carry
            assert int(c[4]) == total, col
            carry = 1 if total >= 10 else 0
            assert bool(c[5]) == (bool(carry) and not last), col
            pieces.append(str(total) if last else str(total % 10))
        else:
            c = SUB_COL_RE.match(col)
            assert c, col
            assert (int(c[1]), int(c[2]), bool(c[3])) == (dx, dy, bool(carry)), col
            borrow = dx - dy - carry < 0
            assert (c[4] is not None) == borrow, col
            if borrow:
                assert (int(c[4]), int(c[5]), bool(c[6])) == (dx, dy, bool(carry)), col
            assert int(c[7]) == dx + 10 * borrow - dy - carry, col
            carry = int(borrow)
            pieces.append(c[7])
    assert len(columns) == (len(str(x)) if op == "-" else max(len(str(x)), len(str(y))))
    assert int("".join(reversed(pieces))) == result, line  # the final result is read off the columns
    return x, op, y, result, m[6]


def check_solution(text: str) -> int:
    """Check a whole worked solution; returns its final answer."""
    first, *steps, last = text.split("\n")
    assert first.endswith(".")
    remaining = first[:-1]  # the expression still to evaluate, e.g. "63+43-61-40"
    for i, line in enumerate(steps):
        x, op, y, value, now = check_step(line)
        # each step takes the first two operands of what is left ...
        assert remaining.startswith(f"{x}{op}{y}"), (remaining, line)
        rest = remaining[len(f"{x}{op}{y}"):]
        assert rest == "" or rest[0] in "+-"
        # ... and rewrites what is left with its result in front
        remaining = f"{value}{rest}"
        assert now == (remaining if rest else None), line
    assert remaining.isdigit() and last == f"The answer is {remaining}."
    return int(remaining)


# --- Generator --------------------------------------------------------------------------------------
def test_generator_is_deterministic_per_seed():
    def draw(seed):
        rng = random.Random(seed)
        return [random_problem(rng) for _ in range(20)]

    assert draw(7) == draw(7)
    assert draw(7) != draw(8)


def test_problems_are_well_formed_and_answers_correct():
    rng = random.Random(0)
    n_ops_seen, small_seen = set(), False
    for i in range(600):
        p = random_problem(rng, book=TRAIN_BOOK if i % 2 else PARAPHRASE_BOOK)
        n_ops_seen.add(len(p.ops))
        assert all(1 <= n <= 99 for n in p.numbers)
        small_seen |= any(n < 10 for n in p.numbers)
        expression = str(p.numbers[0]) + "".join(f"{op}{n}" for op, n in zip(p.ops, p.numbers[1:]))
        assert p.answer == eval(expression)  # independent recomputation
        assert min(running_values(p.numbers, p.ops)) >= 0  # never below zero on the way
        # the numbers appear in the text in story order, and no other digits do
        assert tuple(int(n) for n in re.findall(r"\d+", p.question)) == p.numbers
        assert p.question.endswith("?") and p.question[0].isupper()
    assert n_ops_seen == {1, 2, 3}  # one-change problems too ("She gives away 17. How many are left?")
    assert small_seen


def test_phrasings_cover_compound_comparison_and_question_first():
    rng = random.Random(5)
    questions = [random_problem(rng).question for _ in range(400)]
    assert any(q.startswith("How many") and " if " in q for q in questions)  # the question first
    assert any(", then " in q.split(". ")[1] for q in questions if q.count(". ") >= 2)  # two changes, one sentence
    assert any(" more " in q and " than " in q for q in questions)
    assert any(" fewer " in q and " than " in q for q in questions)
    assert any(re.search(r"(gives away|loses|sells|uses) \d+\.", q) for q in questions)  # the object left out


def test_comparison_moves_the_story_to_the_second_person():
    rng = random.Random(0)
    seen = set()
    for _ in range(2000):
        p = random_problem(rng)
        sentences = p.question.split(". ")
        m = re.match(r"(\w+) (?:has|owns) \d+ (more|fewer) ", sentences[1]) if len(sentences) > 2 else None
        if m:
            seen.add(m[2])
            assert p.ops[0] == ("+" if m[2] == "more" else "-")
            assert m[1] not in sentences[0] and m[1] in sentences[-1]  # the question asks about the second person
    assert seen == {"more", "fewer"}


def test_worked_solutions_are_correct_at_every_step():
    rng = random.Random(1)
    for _ in range(300):
        p = random_problem(rng)
        text = worked_solution(p)
        assert check_solution(text) == p.answer
        assert text.split("\n")[0] == str(p.numbers[0]) + "".join(f"{o}{n}" for o, n in zip(p.ops, p.numbers[1:])) + "."


def test_one_operation_and_one_digit_solutions():
    assert worked_solution(Problem((40, 17), ("-",), "q")) == (
        "40-17.\n40-17: 0-7 b1 10-7=3, 4-1-1=2, so 23.\nThe answer is 23."
    )
    assert worked_solution(Problem((5, 7, 9), ("+", "-"), "q")) == (
        "5+7-9.\n5+7: 5+7=12, so 12. Now 12-9.\n12-9: 2-9 b1 12-9=3, 1-0-1=0, so 3.\nThe answer is 3."
    )
    for p in (Problem((40, 17), ("-",), "q"), Problem((5, 7, 9), ("+", "-"), "q"), Problem((8, 95), ("+",), "q")):
        assert check_solution(worked_solution(p)) == p.answer


def test_worked_solution_example():
    p = Problem((38, 36, 16), ("+", "-"), "q")
    assert worked_solution(p) == (
        "38+36-16.\n"
        "38+36: 8+6=14 c1, 3+3+1=7, so 74. Now 74-16.\n"
        "74-16: 4-6 b1 14-6=8, 7-1-1=5, so 58.\n"
        "The answer is 58."
    )


def test_rejected_solutions_are_wrong_but_consistent():
    rng = random.Random(2)
    for _ in range(200):
        p = random_problem(rng)
        text = rejected_solution(p, rng)
        lines = text.split("\n")
        answer = extract_answer(text)
        assert answer != p.answer
        assert lines[-1] == f"The answer is {answer}."
        # the slip is carried forward: each step starts from the previous step's written result
        results = [int(re.search(r"so (\d+)\.", line)[1]) for line in lines[1:-1]]
        starts = [int(re.match(r"(\d+)", line)[1]) for line in lines[1:-1]]
        assert starts[1:] == results[:-1] and results[-1] == answer
        with pytest.raises(AssertionError):
            check_solution(text)  # some step is arithmetically wrong


def test_prompts_use_alpaca_format_and_cues():
    p = random_problem(random.Random(4))
    cot, direct, neutral = make_prompt(p, "cot"), make_prompt(p, "direct"), make_prompt(p, "neutral")
    assert cot.startswith("Below is an instruction that describes a task.")
    assert cot.endswith(f"{p.question} {COT_CUE}\n\n### Response:\n")
    assert direct.endswith(f"{p.question} {DIRECT_CUE}\n\n### Response:\n")
    assert neutral.endswith(f"\n{p.question}\n\n### Response:\n")  # the bare problem, no cue
    assert COT_CUE not in neutral and DIRECT_CUE not in neutral
    assert make_prompt(p.question, "cot") == cot and make_prompt(p.question, "neutral") == neutral
    with pytest.raises(ValueError):
        make_prompt(p, "fast")


# --- Answers ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "text, expected",
    [
        ("38+36: ... 38+36=74.\nThe answer is 74.", 74),
        ("The answer is 58.", 58),
        ("the answer is 1,204.", 1204),
        ("The answer is 5. The answer is 7.", 5),  # the first committed answer wins
        ("12+3=15 and then 15", 15),  # fallback: last integer
        ("no numbers here", None),
        ("", None),
        ("The answer is -3.", -3),
    ],
)
def test_extract_answer(text, expected):
    assert extract_answer(text) == expected


def test_split_reasoning():
    reasoning, answer = split_reasoning("38+36.\n38+36: 8+6=14 c1, 3+3+1=7, so 74.\nThe answer is 74.\n")
    assert reasoning == "38+36.\n38+36: 8+6=14 c1, 3+3+1=7, so 74."
    assert answer == "The answer is 74."
    assert split_reasoning("The answer is 9.") == ("", "The answer is 9.")
    assert split_reasoning("just thinking 3+4") == ("just thinking 3+4", "")


# --- Build ------------------------------------------------------------------------------------------
def _tree_bytes(folder: Path) -> dict[str, bytes]:
    return {str(f.relative_to(folder)): f.read_bytes() for f in sorted(folder.rglob("*")) if f.is_file()}


@pytest.fixture(scope="module")
def small_build(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("arith")
    build_experiment(out, SMALL)
    return out


def test_build_is_byte_identical_for_the_same_seed(small_build, tmp_path):
    build_experiment(tmp_path / "again", SMALL)
    first, second = _tree_bytes(small_build), _tree_bytes(tmp_path / "again")
    assert set(first) >= {"pretrain.txt.gz", "instructions.json", "preferences.json", "eval.json",
                          "eval_paraphrase.json", "MANIFEST.json", "tokenizer/workbench_tokenizer.json",
                          "tokenizer/arith.tiktoken"}
    assert first == second
    build_experiment(tmp_path / "other", BuildConfig(**{**SMALL.__dict__, "seed": 4}))
    assert _tree_bytes(tmp_path / "other")["eval.json"] != first["eval.json"]


def _pair_tokens(folder: Path) -> list[int]:
    """prompt + response tokens of the longer side of each preference pair, in the build's tokenizer."""
    tok = load_tokenizer(folder / "tokenizer")
    out = []
    for r in json.loads((folder / "preferences.json").read_text()):
        sides = [encode_example(tok, r["instruction"], r["input"], r[f]) for f in ("chosen", "rejected")]
        out.append(max(len(prompt) + len(response) for prompt, response in sides))
    return out


def test_preference_pairs_fit_the_context_they_are_built_for(tmp_path):
    # 180 tokens is shorter than many pairs: the builder must redraw those, not cut them.
    config = BuildConfig(**{**SMALL.__dict__, "n_preferences": 40, "pair_max_tokens": 180})
    build_experiment(tmp_path, config)
    lengths = _pair_tokens(tmp_path)
    assert len(lengths) == 40 and max(lengths) <= 180
    with pytest.raises(ConfigError, match="pair_max_tokens"):
        BuildConfig(pair_max_tokens=8)


def test_committed_preferences_all_train_at_the_default_context():
    # DPO on the shipped pairs at the tiny preset's 256 tokens: no pair is cut to two identical sequences
    # (entry 135 once was, and `workbench train --stage dpo` refused the file).
    paths = default_paths()
    if not paths["manifest"].exists():
        pytest.skip("the shipped data has not been generated")
    context = GPTConfig.preset("tiny").context_length
    assert context == 256 and max(_pair_tokens(DATA_DIR)) <= BuildConfig().pair_max_tokens == context
    data = PreferenceDataset(paths["preferences"], load_tokenizer(paths["tokenizer"]), max_length=context)
    assert len(data) == 1000 and data.dropped == 0


def _instruction(doc: str) -> str:
    return doc.split("### Instruction:\n")[1].split("\n\n")[0]


def _response(doc: str) -> str:
    return doc.split("### Response:\n")[1]


def test_build_files_are_consistent(small_build):
    docs = split_documents(read_text_file(small_build / "pretrain.txt.gz"))
    assert len(docs) == SMALL.n_pretrain
    assert all(d.startswith("Below is an instruction") and "<|endoftext|>" not in d for d in docs)
    assert any(COT_CUE in d for d in docs) and any(DIRECT_CUE in d for d in docs)
    for d in docs:  # every response is a correct worked solution or the bare answer line
        response = _response(d)
        if "\n" in response:
            check_solution(response)
        else:
            assert re.fullmatch(r"The answer is \d+\.", response), response
    instructions = json.loads((small_build / "instructions.json").read_text())
    preferences = json.loads((small_build / "preferences.json").read_text())
    assert len(instructions) == SMALL.n_instructions and len(preferences) == SMALL.n_preferences
    for rec in preferences:
        assert rec["chosen"] == rec["output"]
        assert extract_answer(rec["chosen"]) != extract_answer(rec["rejected"])
        check_solution(rec["chosen"])
    for name, n in (("eval.json", SMALL.n_eval), ("eval_paraphrase.json", SMALL.n_paraphrase)):
        evals = json.loads((small_build / name).read_text())
        assert len(evals) == n
        for rec in evals:
            assert rec["instruction"] == f"{rec['question']} {COT_CUE}" and rec["input"] == ""
            assert rec["neutral_instruction"] == rec["question"]  # the bare problem, no cue
            assert check_solution(rec["output"]) == rec["answer"]
    for rec in instructions:
        if rec["instruction"].endswith(DIRECT_CUE):
            assert rec["output"] == f"The answer is {extract_answer(rec['output'])}."
        else:
            assert rec["instruction"].endswith(COT_CUE)
            check_solution(rec["output"])
    manifest = json.loads((small_build / "MANIFEST.json").read_text())
    for name, digest in manifest["sha256"].items():
        assert hashlib.sha256((small_build / name).read_bytes()).hexdigest() == digest


def _neutral_shares(docs: list[str]) -> tuple[float, float]:
    """(share of documents with a neutral prompt, share of those answered with a worked solution)."""
    neutral = [d for d in docs if not _instruction(d).endswith((COT_CUE, DIRECT_CUE))]
    worked = [d for d in neutral if "\n" in _response(d)]
    return len(neutral) / len(docs), len(worked) / max(1, len(neutral))


def test_neutral_prompts_answer_mostly_directly(tmp_path):
    config = BuildConfig(seed=5, n_pretrain=3000, n_instructions=1, n_preferences=1, n_eval=1, n_paraphrase=1,
                         vocab_size=258)
    build_experiment(tmp_path, config)
    docs = split_documents(read_text_file(tmp_path / "pretrain.txt.gz"))
    neutral, worked = _neutral_shares(docs)
    assert abs(neutral - config.neutral_fraction) < 0.03
    assert abs(worked - config.neutral_cot_fraction) < 0.08  # a base model that rarely reasons unasked
    for d in docs:
        if not _instruction(d).endswith((COT_CUE, DIRECT_CUE)):
            assert _instruction(d).endswith("?")  # the bare question


def _problem_key(text: str) -> tuple[int, ...]:
    """A problem's identity (`Problem.key`) read off its text: its numbers in story order."""
    return tuple(int(n) for n in re.findall(r"\d+", text))


def _training_instructions(folder: Path) -> list[str]:
    out = [_instruction(d) for d in split_documents(read_text_file(folder / "pretrain.txt.gz"))]
    for name in ("instructions.json", "preferences.json"):
        out += [r["instruction"] for r in json.loads((folder / name).read_text())]
    return out


def test_held_out_sets_have_no_overlap_with_training(small_build):
    held_out = [r["question"] for name in ("eval.json", "eval_paraphrase.json")
                for r in json.loads((small_build / name).read_text())]
    held_keys = {_problem_key(q) for q in held_out}
    assert len(held_keys) == len(held_out)  # held-out problems are distinct, across both sets too
    assert not held_keys & {_problem_key(i) for i in _training_instructions(small_build)}


# --- Paraphrase set: templates never used in training -------------------------------------------------
_SLOTS = {
    "name": "|".join(n for n, _, _ in NAMES),
    "other": "|".join(n for n, _, _ in NAMES),
    "pro": "he|she|He|She",
    "Pro": "He|She",
    "poss": "his|her",
    "n": r"\d+",
    "obj": "|".join(OBJECTS),
    "verb": "|".join(ADD_VERBS + SUB_VERBS),
    "relative": "|".join(RELATIVES),
    "story": ".+?",
}


def _template_regex(template: str) -> re.Pattern:
    """A template's surface form with its slots filled by any word of the shared vocabulary."""
    parts = re.split(r"\{(\w+)\}", template)
    return re.compile("".join(re.escape(p) if i % 2 == 0 else f"(?:{_SLOTS[p]})" for i, p in enumerate(parts)))


def test_phrasebooks_are_disjoint():
    train, paraphrase = TRAIN_BOOK.templates(), PARAPHRASE_BOOK.templates()
    assert not set(train) & set(paraphrase)
    # no template of one book can write a sentence the other book's templates could write
    filled = dict(name="Ann", other="Tom", pro="she", Pro="She", poss="her", n=12, obj="apples", verb="buys",
                  relative="friend", story="Ann has 12 apples")
    for mine, theirs in ((train, paraphrase), (paraphrase, train)):
        patterns = [_template_regex(t) for t in theirs]
        for template in mine:
            text = template.format(**filled)
            assert not any(r.fullmatch(text) for r in patterns), template


def _assert_no_paraphrase_template_in(texts: list[str]) -> None:
    text = "\n".join(texts)
    for template in PARAPHRASE_BOOK.templates():
        match = _template_regex(template).search(text)
        assert match is None, f"paraphrase template {template!r} occurs in training: {match[0]!r}"


def test_paraphrase_set_shares_no_template_with_training(small_build):
    _assert_no_paraphrase_template_in(_training_instructions(small_build))
    paraphrase = [r["question"] for r in json.loads((small_build / "eval_paraphrase.json").read_text())]
    # ... while every paraphrase question is written with them (its question form is a paraphrase one)
    endings = [_template_regex(t) for t in PARAPHRASE_BOOK.questions + PARAPHRASE_BOOK.nameless_questions
               + PARAPHRASE_BOOK.question_first]
    for q in paraphrase:
        assert any(r.search(q) for r in endings), q
    # and no training question form ends a paraphrase question
    train_endings = [_template_regex(t) for t in TRAIN_BOOK.questions + TRAIN_BOOK.nameless_questions]
    for q in paraphrase:
        last = q.split(". ")[-1]
        assert not any(r.fullmatch(last) for r in train_endings), q


def test_tokenizer_spells_every_digit_alone(small_build):
    from llm_core.tokenizer import load_tokenizer

    tok = load_tokenizer(small_build / "tokenizer")
    ids = tok.encode("38+36=74. The answer is 1204.")
    pieces = [tok.decode([i]) for i in ids]
    assert [p for p in pieces if any(c.isdigit() for c in p)] == list("38367412" "04")
    assert tok.decode(ids) == "38+36=74. The answer is 1204."


def test_document_separator_round_trip():
    docs = ["a\n\nb", "c"]
    assert split_documents(DOCUMENT_SEPARATOR.join(docs) + "\n") == docs


def test_committed_paraphrase_set_shares_no_template_with_training():
    if not default_paths()["manifest"].exists():
        pytest.skip("the shipped data has not been generated")
    _assert_no_paraphrase_template_in(_training_instructions(DATA_DIR))
    # the committed pretraining text has the neutral share it was built with
    neutral, worked = _neutral_shares(split_documents(read_text_file(default_paths()["pretrain"])))
    assert abs(neutral - BuildConfig().neutral_fraction) < 0.02
    assert abs(worked - BuildConfig().neutral_cot_fraction) < 0.05


def test_committed_data_matches_its_manifest():
    paths = default_paths()
    if not paths["manifest"].exists():
        pytest.skip("the shipped data has not been generated")
    manifest = json.loads(paths["manifest"].read_text())
    for name, digest in manifest["sha256"].items():
        assert hashlib.sha256((DATA_DIR / name).read_bytes()).hexdigest() == digest, name
    assert manifest["config"] == BuildConfig().__dict__  # built with the defaults


# --- CLI --------------------------------------------------------------------------------------------
def test_cli_generate_into_tmp_dir(tmp_path, monkeypatch):
    from workbench.cli import app
    from workbench.commands import data as data_cmd

    monkeypatch.setattr(data_cmd, "BuildConfig",
                        lambda **kw: BuildConfig(**{**SMALL.__dict__, **kw}))
    result = CliRunner().invoke(app, ["data", "generate", "--out", str(tmp_path / "d"), "--seed", "3",
                                      "--n-pretrain", "40", "--n-eval", "20"])
    assert result.exit_code == 0, result.output
    assert "eval.json" in result.output
    assert len(json.loads((tmp_path / "d" / "eval.json").read_text())) == 20
    assert (tmp_path / "d" / "tokenizer" / "workbench_tokenizer.json").exists()


def test_committed_data_equals_a_fresh_build(tmp_path):
    if not default_paths()["manifest"].exists():
        pytest.skip("the shipped data has not been generated")
    build_experiment(tmp_path / "fresh", BuildConfig())  # about 3 s
    assert _tree_bytes(tmp_path / "fresh") == _tree_bytes(DATA_DIR)
