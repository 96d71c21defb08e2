"""Trace distillation: the teacher writes worked solutions, only verified ones are kept, the student is
SFT'd on them (DeepSeek-AI, 2025, "DeepSeek-R1: Incentivizing Reasoning Capability in LLMs via
Reinforcement Learning", arXiv:2501.12948, section 2.4: the distilled Qwen/Llama models are plain SFT on
reasoning the large model wrote, filtered for correctness).

1. `generate_traces`: for each training problem, N chain-of-thought samples from ONE prefill decoded as a
   batch (`Engine.sample_batch`, per-row seeds derived from the run's seed and the problem's index, so the
   file is reproducible); rejection sampling keeps a sample only if the `Reward` (default: the
   experiment's answer check, `AccuracyReward`) gives it full marks and, with `check_process`, the
   verifier re-derives every line of its arithmetic (a right answer reached by wrong steps is not a
   trace to imitate). Duplicate accepted traces of one problem are kept once: an easy problem the
   teacher always solves the same way should not outweigh a hard one.
2. `write_traces`: `traces.json` (Alpaca records: instruction, input, output, plus the integer `answer`,
   which the instruction loader ignores) and `traces_stats.json` (acceptance rate, traces per problem).
3. `trace_distillation`: both into a new run folder, then a Trainer of stage distill with
   distill_mode=traces on that file: cross-entropy on the response tokens, i.e. SFT.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import torch

from ..engine import RESPONSE_STOPS, Engine, SamplingParams
from ..engine.sampling import derive_seed
from ..errors import ConfigError, DataError
from ..experiment.verifier import verify
from ..formatting import format_prompt
from ..tokenizer import Tokenizer

TRACES_FILE = "traces.json"
STATS_FILE = "traces_stats.json"


@dataclass
class TraceStats:
    problems: int = 0
    samples_per_problem: int = 0
    sampled: int = 0  # completions the teacher wrote
    correct_answer: int = 0  # ... whose answer the reward accepted
    verified: int = 0  # ... whose worked steps also passed the verifier (= accepted before de-duplication)
    kept: int = 0  # distinct accepted traces written to the file
    acceptance_rate: float = 0.0  # verified / sampled
    problems_with_trace: int = 0
    traces_per_problem: dict[str, int] = field(default_factory=dict)  # "k" -> problems with k distinct traces
    mean_traces_per_problem: float = 0.0
    tokens_sampled: int = 0
    seconds: float = 0.0
    tokens_per_s: float = 0.0
    teacher: str = ""
    settings: dict[str, Any] = field(default_factory=dict)


@torch.no_grad()
def generate_traces(model: torch.nn.Module, tokenizer: Tokenizer, records: Iterable[Mapping[str, Any]],
                    n: int = 4, *, reward: Any = None, check_process: bool = True, temperature: float = 0.8,
                    max_new_tokens: int = 256, seed: int = 0) -> tuple[list[dict[str, Any]], TraceStats]:
    """(accepted Alpaca records, stats) for `records` (each with `instruction`, optional `input`, `answer`).

    Every prompt gets the chain-of-thought cue, whatever answer style its instruction asked for: the point
    is the teacher's reasoning. `reward(prompt, completion, record) -> float` is any RL `Reward`
    (default `AccuracyReward`); a sample is accepted at a reward >= 1."""
    from ..data.prompts import prompt_instruction
    from ..rl.rewards import AccuracyReward

    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ConfigError(f"trace_samples: must be a positive integer, got {n!r}", field="trace_samples")
    reward = reward if reward is not None else AccuracyReward()
    engine = Engine(model, tokenizer)
    context = model.config.context_length
    stats = TraceStats(samples_per_problem=n, settings={"temperature": temperature, "max_new_tokens": max_new_tokens,
                                                          "seed": seed, "check_process": check_process,
                                                          "reward": getattr(reward, "name", type(reward).__name__)})
    kept: list[dict[str, Any]] = []
    histogram: dict[int, int] = {}
    start = time.perf_counter()
    for index, record in enumerate(records):
        instruction = prompt_instruction(record["instruction"], "cot")
        prompt = format_prompt(instruction, record.get("input", ""))
        ids = tokenizer.encode(prompt)
        budget = min(max_new_tokens, context - len(ids))
        if budget < 1:
            raise DataError(f"problem {index}: its prompt ({len(ids)} tokens) fills the teacher's context ({context})")
        params = SamplingParams(temperature=temperature, seed=derive_seed(seed, index), stop=RESPONSE_STOPS)
        texts: list[str] = []
        for finished in engine.sample_batch(ids, n, budget, params):
            texts.extend(text for _, text, _ in finished)
        stats.tokens_sampled += engine.last_stats.new_tokens
        distinct: list[str] = []
        for text in texts:
            text = text.strip()
            stats.sampled += 1
            if reward(prompt, text, record) < 1.0:
                continue
            stats.correct_answer += 1
            if check_process and not verify(text, record["instruction"]).correct:
                continue
            stats.verified += 1
            if text not in distinct:
                distinct.append(text)
        histogram[len(distinct)] = histogram.get(len(distinct), 0) + 1
        for text in distinct:
            kept.append({"instruction": instruction, "input": record.get("input", ""), "output": text,
                         "answer": int(record["answer"])})
        stats.problems += 1
    stats.seconds = time.perf_counter() - start
    stats.kept = len(kept)
    stats.acceptance_rate = stats.verified / max(stats.sampled, 1)
    stats.problems_with_trace = stats.problems - histogram.get(0, 0)
    stats.traces_per_problem = {str(k): histogram[k] for k in sorted(histogram)}
    stats.mean_traces_per_problem = stats.kept / max(stats.problems, 1)
    stats.tokens_per_s = stats.tokens_sampled / max(stats.seconds, 1e-9)
    return kept, stats


def write_traces(folder: str | Path, traces: list[dict[str, Any]], stats: TraceStats) -> Path:
    """`folder/traces.json` (Alpaca JSON) and `folder/traces_stats.json`; returns the traces file."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if not traces:
        raise DataError(f"{folder}: the teacher wrote no verified trace ({stats.sampled} sampled); a stronger teacher, "
                        "more trace_samples or a higher trace_temperature may help")
    path = folder / TRACES_FILE
    path.write_text(json.dumps(traces, indent=1) + "\n")
    (folder / STATS_FILE).write_text(json.dumps(asdict(stats), indent=2) + "\n")
    return path


def distill_trainer(config: Any, **trainer_kwargs: Any) -> Any:
    """The distill stage's Trainer (`StageSpec.trainer`): logits mode trains at once; traces mode has the
    teacher write and verify its traces into the new run folder first (`trace_distillation`)."""
    from ..training import Trainer

    if config.distill_mode == "traces":
        return trace_distillation(config, **trainer_kwargs)
    return Trainer(config, **trainer_kwargs)


def trace_distillation(config: Any, problems: str | Path | None = None, reward: Any = None,
                       **trainer_kwargs: Any) -> Any:
    """A Trainer (not yet run) that SFTs the student of `config` (stage distill, distill_mode traces) on the
    verified traces its teacher writes now into the new run folder. `problems`: an Alpaca file with
    answers (default: `config.data` if it is a JSON file, else the default experiment's instructions)."""
    from ..data import PromptDataset
    from ..experiment import default_paths
    from ..training import Trainer
    from ..training.builders import build_tokenizer
    from ..training.loading import TOKENIZER_DIR, load_checkpoint, run_dir_of
    from ..training.runs import make_run_dir
    from .objective import check_same_tokenizer, student_tokenizer_source

    if config.stage != "distill" or config.distill_mode != "traces":
        raise ConfigError("trace_distillation: needs stage=distill and distill_mode=traces", field="distill_mode")
    if problems is None:
        problems = config.data if config.data.endswith((".json", ".jsonl")) else default_paths()["instructions"]
    teacher = load_checkpoint(config.teacher)
    teacher_source = str(run_dir_of(teacher.path) / TOKENIZER_DIR)
    init_tokenizer = load_checkpoint(config.init_from).tokenizer if config.init_from else None
    # Refused before the teacher spends minutes writing traces the student could not read.
    check_same_tokenizer(build_tokenizer(config, init_tokenizer), teacher.tokenizer,
                         student_tokenizer_source(config), teacher_source)
    # The RL stage's prompt loader reads the problems: the answer from `answer` or the reference output.
    records = PromptDataset(problems, teacher.tokenizer, max_length=teacher.model.config.context_length).records
    if config.trace_problems:
        records = records[: config.trace_problems]
    run_dir = make_run_dir(config)
    traces, stats = generate_traces(teacher.model, teacher.tokenizer, records, config.trace_samples, reward=reward,
                                    temperature=config.trace_temperature,
                                    max_new_tokens=config.trace_max_new_tokens, seed=config.seed)
    stats.teacher = str(teacher.path)
    path = write_traces(run_dir, traces, stats)
    return Trainer(config.with_overrides(data=str(path)), run_dir=run_dir, **trainer_kwargs)
