"""Build the embedded default experiment's files (`llm_core/experiment/data/arith/`) from a seed.

Files written into the output folder:

- `pretrain.txt.gz`: documents (gzip, written with mtime 0 so the bytes depend on the text alone), each an Alpaca prompt (`llm_core.formatting.format_prompt`) followed by its
  response, a mix of worked (chain-of-thought cue) and direct answers ("Answer directly." cue), plus a
  share of neutral prompts (the bare problem) answered mostly directly and sometimes worked: the habit of a
  base model that rarely reasons unless asked, which the RL stage starts from. DOCUMENT SEPARATOR: documents are
  joined by a line holding only the literal text `<|endoftext|>`, i.e. by "\\n<|endoftext|>\\n" (the file
  ends with "\\n"). A text loader splits on that line (`split_documents`) and inserts the end-of-text token
  *by id* between documents, so the literal text never has to be encoded as a special token. Prompts
  contain blank lines, so blank lines cannot delimit documents; the literal line can never occur inside a
  problem.
- `instructions.json`: Alpaca records `{instruction, input, output}`, both answer styles, cued by the
  instruction's last sentence (`COT_CUE` / `DIRECT_CUE`).
- `preferences.json`: `{instruction, input, output, chosen, rejected}`; chosen (= output) is the correct
  worked solution, rejected the same solution with one arithmetic slip (a dropped carry/borrow or a digit
  one off) carried consistently to a wrong final answer. Each pair, as prompt + response in the experiment's
  tokenizer, fits `pair_max_tokens` (the default model's context): a longer pair would be cut before its
  answers differ, and DPO would then compare two identical sequences.
- `eval.json`: held-out problems `{instruction (CoT cue), input, output, answer: int, question,
  neutral_instruction}`, written with the training phrasebook. No training file contains a problem with
  the same numbers in the same order.
- `eval_paraphrase.json`: the same record shape, written with the paraphrase phrasebook, whose templates
  (sentence frames, connectives, question forms) never occur in training: generalisation, not recall.
- `tokenizer/`: a byte-level BPE (`llm_core.bpe`) trained on the pretraining documents; every digit is its
  own token.
- `MANIFEST.json`: the build config and the sha256 of every file above, so a checkout can be checked
  against a fresh build.

The same config (seed included) always gives byte-identical files.
"""
from __future__ import annotations

import gzip
import hashlib
import json
import random
from dataclasses import asdict, dataclass
from pathlib import Path

from ..bpe import EOT_TOKEN, save_bpe, train_bpe
from ..errors import ConfigError
from ..formatting import encode_example
from ..model import PRESETS
from ..tokenizer import load_tokenizer
from .arithmetic import (
    PARAPHRASE_BOOK,
    TRAIN_BOOK,
    Phrasebook,
    Problem,
    possible_slips,
    make_instruction,
    make_prompt,
    random_problem,
    rejected_solution,
    solution,
)

DOCUMENT_SEPARATOR = f"\n{EOT_TOKEN}\n"
TOKENIZER_NAME = "arith"
FILES = ("pretrain.txt.gz", "instructions.json", "preferences.json", "eval.json", "eval_paraphrase.json")


@dataclass
class BuildConfig:
    seed: int = 0
    n_pretrain: int = 50000  # documents in pretrain.txt.gz
    n_instructions: int = 2000
    n_preferences: int = 1000
    n_eval: int = 200
    n_paraphrase: int = 200  # held-out problems in eval_paraphrase.json
    direct_fraction: float = 0.2  # share of direct answers among cued prompts (pretrain.txt.gz, instructions.json)
    neutral_fraction: float = 0.1  # share of pretrain.txt.gz documents with a neutral prompt
    neutral_cot_fraction: float = 0.2  # of those, the share answered with a worked solution
    vocab_size: int = 512
    pair_max_tokens: int = PRESETS["tiny"]["context_length"]  # pairs fit the default model's context whole

    def __post_init__(self) -> None:
        for name in ("n_pretrain", "n_instructions", "n_preferences", "n_eval", "n_paraphrase"):
            if getattr(self, name) < 1:
                raise ConfigError(f"BuildConfig.{name}: must be >= 1, got {getattr(self, name)}")
        for name in ("direct_fraction", "neutral_fraction", "neutral_cot_fraction"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"BuildConfig.{name}: must be in [0, 1], got {getattr(self, name)}")
        if self.pair_max_tokens < 16:
            raise ConfigError(f"BuildConfig.pair_max_tokens: must be >= 16, got {self.pair_max_tokens}")
        if self.vocab_size < 258:
            raise ConfigError(f"BuildConfig.vocab_size: must be >= 258, got {self.vocab_size}")


def split_documents(text: str) -> list[str]:
    """Inverse of the pretrain.txt.gz layout: the documents between `<|endoftext|>` lines."""
    docs = text.split(DOCUMENT_SEPARATOR)
    if docs and docs[-1].endswith("\n"):
        docs[-1] = docs[-1][:-1]
    return [d for d in docs if d]


def _problems(rng: random.Random, n: int, exclude: set, book: Phrasebook = TRAIN_BOOK) -> list[Problem]:
    out = []
    while len(out) < n:
        p = random_problem(rng, book=book)
        if p.key not in exclude:
            out.append(p)
    return out


def _held_out(rng: random.Random, n: int, held_out: set, book: Phrasebook) -> list[Problem]:
    """`n` problems distinct from each other and from `held_out`, which they join."""
    out: list[Problem] = []
    while len(out) < n:
        p = random_problem(rng, book=book)
        if p.key not in held_out:
            held_out.add(p.key)
            out.append(p)
    return out


def _eval_record(p: Problem) -> dict:
    return {
        "instruction": make_instruction(p, "cot"),
        "input": "",
        "output": solution(p, "cot"),
        "answer": p.answer,
        "question": p.question,
        "neutral_instruction": make_instruction(p, "neutral"),
    }


def _dump(records: list[dict], path: Path) -> None:
    path.write_text(json.dumps(records, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def build_experiment(out: str | Path, config: BuildConfig | None = None) -> dict[str, Path]:
    """Write every file of the experiment into `out`; returns {name: path}."""
    config = config or BuildConfig()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(config.seed)

    # Held-out problems first (distinct among themselves), then training problems that avoid them.
    held_out: set = set()
    eval_problems = _held_out(rng, config.n_eval, held_out, TRAIN_BOOK)
    paraphrase_problems = _held_out(rng, config.n_paraphrase, held_out, PARAPHRASE_BOOK)

    def cued_mode() -> str:
        return "direct" if rng.random() < config.direct_fraction else "cot"

    docs = []
    for p in _problems(rng, config.n_pretrain, held_out):
        if rng.random() < config.neutral_fraction:
            # The bare problem, answered as a base model that rarely reasons would: mostly directly.
            prompt = make_prompt(p, "neutral")
            response = solution(p, "cot" if rng.random() < config.neutral_cot_fraction else "direct")
        else:
            m = cued_mode()
            prompt, response = make_prompt(p, m), solution(p, m)
        docs.append(prompt + response)
    text = DOCUMENT_SEPARATOR.join(docs) + "\n"
    (out / "pretrain.txt.gz").write_bytes(gzip.compress(text.encode("utf-8"), compresslevel=9, mtime=0))

    instructions = []
    for p in _problems(rng, config.n_instructions, held_out):
        m = cued_mode()
        instructions.append({"instruction": make_instruction(p, m), "input": "", "output": solution(p, m)})
    _dump(instructions, out / "instructions.json")

    # The tokenizer before the preference pairs: their length is counted in its tokens.
    ranks = train_bpe(docs, config.vocab_size, special_tokens=(EOT_TOKEN,))
    save_bpe(ranks, out / "tokenizer", special_tokens=(EOT_TOKEN,), name=TOKENIZER_NAME)
    tokenizer = load_tokenizer(out / "tokenizer")

    def tokens(instruction: str, response: str) -> int:
        prompt_ids, response_ids = encode_example(tokenizer, instruction, "", response)
        return len(prompt_ids) + len(response_ids)

    preferences = []
    while len(preferences) < config.n_preferences:
        (p,) = _problems(rng, 1, held_out)
        if not possible_slips(p):
            continue  # e.g. "1-1": no slip keeps every amount >= 0, so no plausible wrong solution
        instruction, chosen, rejected = make_instruction(p, "cot"), solution(p, "cot"), rejected_solution(p, rng)
        if max(tokens(instruction, chosen), tokens(instruction, rejected)) > config.pair_max_tokens:
            continue  # cut to the context, the two could be the same sequence (module docstring)
        preferences.append({"instruction": instruction, "input": "", "output": chosen, "chosen": chosen,
                            "rejected": rejected})
    _dump(preferences, out / "preferences.json")

    _dump([_eval_record(p) for p in eval_problems], out / "eval.json")
    _dump([_eval_record(p) for p in paraphrase_problems], out / "eval_paraphrase.json")

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
