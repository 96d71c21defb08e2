"""Does the default checkpoint answer the questions people type? The README's example questions, measured.

    workbench train --set name=pretrain                     # the default recipe
    python benchmarks/arith_examples.py -c runs/pretrain    # greedy, each question in three prompt modes
    python benchmarks/arith_examples.py -c runs/sft --vote 8

Each question is asked greedily with the chain-of-thought cue ("cot"), the direct cue ("direct") and no
cue at all ("neutral", the bare question as a user types it), and optionally by a majority vote over N
chain-of-thought samples at temperature 0.8. The table says, per question, the expected answer, what
each mode answered, and whether the exact question text occurs in the training files (a question the
model has seen verbatim proves less). The exit status is 0 only when every greedy CoT answer is right,
so the script can guard the README's claim.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from llm_core.engine import Engine  # noqa: E402
from llm_core.engine.engine import VOTE_DEFAULTS  # noqa: E402
from llm_core.experiment import default_paths, is_step_by_step, make_prompt  # noqa: E402
from llm_core.experiment.build import split_documents  # noqa: E402
from llm_core.training import load_checkpoint  # noqa: E402
from llm_core.io import read_text_file  # noqa: E402

# (question, expected answer): the README's Python and chat examples, and the question of issue 18.
EXAMPLES: list[tuple[str, int]] = [
    ("Ann has 40 pens. She gives away 17. How many are left?", 23),
    ("Ruby has 63 cards. She gets 43 more, then loses 61. How many are left?", 45),
    ("Tom has 12 apples. He buys 25 more. How many apples does Tom have?", 37),
    ("Mia has 52 shells. She finds 27 shells, then gives 15 to her brother. How many shells does Mia have now?",
     64),
]


def training_questions() -> set[str]:
    """Every problem text in the training files (pretrain.txt.gz, instructions.json, preferences.json)."""
    paths = default_paths()
    texts = [d.split("### Instruction:\n")[1].split("\n\n")[0]
             for d in split_documents(read_text_file(paths["pretrain"]))]
    for name in ("instructions", "preferences"):
        texts += [r["instruction"] for r in json.loads(paths[name].read_text(encoding="utf-8"))]
    out = set()
    for text in texts:
        for cue in (" Think step by step.", " Answer directly."):
            text = text.removesuffix(cue)
        out.add(text)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-c", "--checkpoint", type=Path, default=Path("runs/pretrain"))
    parser.add_argument("--vote", type=int, default=0, help="Also a majority vote over N CoT samples (0 = off).")
    parser.add_argument("--max-new-tokens", type=int, default=256)
    args = parser.parse_args()

    ckpt = load_checkpoint(args.checkpoint)
    engine = Engine(ckpt.model, ckpt.tokenizer)
    seen = training_questions()
    print(f"{ckpt.path} (step {ckpt.step}); greedy unless marked vote")
    header = ["question", "expected", "cot", "direct", "neutral", "neutral worked?", "in training?"]
    if args.vote:
        header.insert(5, f"vote N={args.vote}")
    rows, cot_right = [], 0
    for question, expected in EXAMPLES:
        answers = {mode: engine.answer(question, mode=mode, max_new_tokens=args.max_new_tokens)
                   for mode in ("cot", "direct", "neutral")}
        cot_right += answers["cot"].answer == expected

        def cell(mode: str) -> str:
            got = answers[mode].answer
            return f"{got} {'ok' if got == expected else 'WRONG'}"

        row = [question, str(expected), cell("cot"), cell("direct"), cell("neutral"),
               "yes" if is_step_by_step(answers["neutral"].text) else "no", "yes" if question in seen else "no"]
        if args.vote:
            vote = engine.majority_vote(make_prompt(question), n=args.vote, max_new_tokens=args.max_new_tokens,
                                        params=VOTE_DEFAULTS.replace(seed=0))  # temperature 0.8, the default
            tally = ", ".join(f"{a} x{c}" for a, c in vote.tally.items())
            row.insert(5, f"{vote.answer} {'ok' if vote.answer == expected else 'WRONG'} ({tally})")
        rows.append(row)
        if answers["cot"].answer != expected:
            print(f"\nwrong chain of thought for {question!r}:\n{answers['cot'].text}\n")
    print("| " + " | ".join(header) + " |")
    print("| " + " | ".join("---" for _ in header) + " |")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print(f"\ngreedy CoT: {cot_right}/{len(EXAMPLES)} right")
    return 0 if cot_right == len(EXAMPLES) else 1


if __name__ == "__main__":
    from script_errors import run_script

    run_script(main)
