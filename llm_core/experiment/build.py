"""Build the embedded default experiment's files (`data/arith/`) from a seed.

Files written into the output folder:

- `pretrain.txt`: documents, each an Alpaca prompt (`llm_core.formatting.format_prompt`) followed by its
  response, a mix of worked (chain-of-thought cue) and direct answers. DOCUMENT SEPARATOR: documents are
  joined by a line holding only the literal text `<|endoftext|>`, i.e. by "\\n<|endoftext|>\\n" (the file
  ends with "\\n"). A text loader splits on that line (`split_documents`) and inserts the end-of-text token
  *by id* between documents, so the literal text never has to be encoded as a special token. Prompts
  contain blank lines, so blank lines cannot delimit documents; the literal line can never occur inside a
  problem.
- `instructions.json`: Alpaca records `{instruction, input, output}`, both answer styles, cued by the
  instruction's last sentence (`COT_CUE` / `DIRECT_CUE`).
- `preferences.json`: `{instruction, input, output, chosen, rejected}`; chosen (= output) is the correct
  worked solution, rejected the same solution with one arithmetic slip (a dropped carry/borrow or a digit
  one off) carried consistently to a wrong final answer.
- `eval.json`: held-out problems `{instruction (CoT cue), input, output, answer: int, question}`. No
  training file contains a problem with the same (numbers, operations).
- `tokenizer/`: a byte-level BPE (`llm_core.bpe`) trained on the pretraining documents; every digit is its
  own token.
- `MANIFEST.json`: the build config and the sha256 of every file above, so a checkout can be checked
  against a fresh build.

The same config (seed included) always gives byte-identical files.
"""
from __future__ import annotations

import hashlib
import json
import random
from dataclasses import asdict, dataclass
from pathlib import Path

from ..bpe import EOT_TOKEN, save_bpe, train_bpe
from ..errors import ConfigError
from .arithmetic import (
    Problem,
    make_instruction,
    make_prompt,
    random_problem,
    rejected_solution,
    solution,
)

DOCUMENT_SEPARATOR = f"\n{EOT_TOKEN}\n"
TOKENIZER_NAME = "arith"
FILES = ("pretrain.txt", "instructions.json", "preferences.json", "eval.json")


@dataclass
class BuildConfig:
    seed: int = 0
    n_pretrain: int = 12000  # documents in pretrain.txt
    n_instructions: int = 2000
    n_preferences: int = 1000
    n_eval: int = 200
    direct_fraction: float = 0.2  # share of direct answers in pretrain.txt and instructions.json
    vocab_size: int = 512

    def __post_init__(self) -> None:
        for name in ("n_pretrain", "n_instructions", "n_preferences", "n_eval"):
            if getattr(self, name) < 1:
                raise ConfigError(f"BuildConfig.{name}: must be >= 1, got {getattr(self, name)}")
        if not 0.0 <= self.direct_fraction <= 1.0:
            raise ConfigError(f"BuildConfig.direct_fraction: must be in [0, 1], got {self.direct_fraction}")
        if self.vocab_size < 258:
            raise ConfigError(f"BuildConfig.vocab_size: must be >= 258, got {self.vocab_size}")


def split_documents(text: str) -> list[str]:
    """Inverse of the pretrain.txt layout: the documents between `<|endoftext|>` lines."""
    docs = text.split(DOCUMENT_SEPARATOR)
    if docs and docs[-1].endswith("\n"):
        docs[-1] = docs[-1][:-1]
    return [d for d in docs if d]


def _problems(rng: random.Random, n: int, exclude: set) -> list[Problem]:
    out = []
    while len(out) < n:
        p = random_problem(rng)
        if p.key not in exclude:
            out.append(p)
    return out


def _dump(records: list[dict], path: Path) -> None:
    path.write_text(json.dumps(records, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def build_experiment(out: str | Path, config: BuildConfig | None = None) -> dict[str, Path]:
    """Write every file of the experiment into `out`; returns {name: path}."""
    config = config or BuildConfig()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(config.seed)

    # Held-out problems first (distinct among themselves), then training problems that avoid them.
    eval_problems: list[Problem] = []
    held_out: set = set()
    while len(eval_problems) < config.n_eval:
        p = random_problem(rng)
        if p.key not in held_out:
            held_out.add(p.key)
            eval_problems.append(p)

    def mode() -> str:
        return "direct" if rng.random() < config.direct_fraction else "cot"

    docs = [
        make_prompt(p, m) + solution(p, m)
        for p in _problems(rng, config.n_pretrain, held_out)
        for m in [mode()]
    ]
    (out / "pretrain.txt").write_text(DOCUMENT_SEPARATOR.join(docs) + "\n", encoding="utf-8")

    instructions = []
    for p in _problems(rng, config.n_instructions, held_out):
        m = mode()
        instructions.append({"instruction": make_instruction(p, m), "input": "", "output": solution(p, m)})
    _dump(instructions, out / "instructions.json")

    preferences = []
    for p in _problems(rng, config.n_preferences, held_out):
        chosen = solution(p, "cot")
        preferences.append({
            "instruction": make_instruction(p, "cot"),
            "input": "",
            "output": chosen,
            "chosen": chosen,
            "rejected": rejected_solution(p, rng),
        })
    _dump(preferences, out / "preferences.json")

    _dump(
        [
            {
                "instruction": make_instruction(p, "cot"),
                "input": "",
                "output": solution(p, "cot"),
                "answer": p.answer,
                "question": p.question,
            }
            for p in eval_problems
        ],
        out / "eval.json",
    )

    ranks = train_bpe(docs, config.vocab_size, special_tokens=(EOT_TOKEN,))
    save_bpe(ranks, out / "tokenizer", special_tokens=(EOT_TOKEN,), name=TOKENIZER_NAME)

    paths = {name: out / name for name in FILES}
    paths["tokenizer"] = out / "tokenizer"
    manifest = {
        "config": asdict(config),
        "sha256": {
            str(f.relative_to(out)): hashlib.sha256(f.read_bytes()).hexdigest()
            for f in sorted([*(out / n for n in FILES), *sorted((out / "tokenizer").iterdir())])
        },
    }
    (out / "MANIFEST.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    paths["manifest"] = out / "MANIFEST.json"
    return paths
