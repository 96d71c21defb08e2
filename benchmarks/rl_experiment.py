"""Reinforcement learning on the default experiment: pure RL (R1-Zero in miniature), RL on cued
chain-of-thought prompts, and SFT then RL (R1's recipe), each measured before and after.

    workbench train --set name=pretrain                                            # the base model
    workbench train --set stage=sft --set init_from=runs/pretrain --set name=sft   # for the SFT + RL arm
    python benchmarks/rl_experiment.py --pretrain runs/pretrain --sft runs/sft     # all three arms
    python benchmarks/rl_experiment.py --pretrain runs/pretrain --arms pure --steps 60
    python benchmarks/rl_experiment.py --pretrain runs/pretrain --arms pure --set kl_beta=0.02
    python benchmarks/rl_experiment.py --sft runs/sft --arms sft+rl-mixed --set kl_beta=0.05
    python benchmarks/rl_experiment.py --score runs/pretrain runs/rl-exp-pure          # measure only

Every arm is `workbench rl` (the stage recipe: GRPO, G=8 completions for each of 8 prompts a step, accuracy
+ format rewards) with its own prompts; "pure" and "sft+rl" use neutral prompts (the bare problem: whether
to work it out is the policy's choice), "cot" the chain-of-thought cue, "sft+rl-mixed" the two in turn.
For each starting checkpoint and each result it measures, on the held-out problems of
llm_core/experiment/data/arith/eval.json (greedy, the same numbers as `workbench eval`): CoT accuracy,
neutral-prompt accuracy and the share of neutral answers worked step by step. The rows print as the
README's table.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from llm_core.config import parse_overrides  # noqa: E402
from llm_core.engine import Engine  # noqa: E402
from llm_core.experiment import default_paths  # noqa: E402
from llm_core.rl.objective import greedy_accuracy  # noqa: E402
from llm_core.training import TrainConfig, Trainer, load_checkpoint, stage_config  # noqa: E402

ARMS = {  # name: (start from, prompts)
    "pure": ("pretrain", "neutral"),
    "cot": ("pretrain", "cot"),
    "sft+rl": ("sft", "neutral"),
    "sft+rl-mixed": ("sft", "mixed"),
}


def held_out(path: Path | None, n: int) -> list[dict[str, Any]]:
    records = json.loads((path or default_paths()["eval"]).read_text())
    return records[:n]


def evaluate(checkpoint: Path, records: list[dict[str, Any]], max_new_tokens: int = 256) -> dict[str, float]:
    """Greedy accuracy with the CoT cue and with the bare problem, and the neutral step-by-step share."""
    loaded = load_checkpoint(checkpoint)
    engine = Engine(loaded.model, loaded.tokenizer)
    out: dict[str, float] = {}
    for mode in ("cot", "neutral"):
        out[f"{mode}_accuracy"], out[f"{mode}_worked"] = greedy_accuracy(engine, records, mode, max_new_tokens)
    return out


def accuracy_cells(m: dict[str, float]) -> str:
    """The table's last three cells: CoT accuracy, neutral-prompt accuracy, neutral step-by-step share."""
    return f"{m['cot_accuracy']:.1%} | {m['neutral_accuracy']:.1%} | {m['neutral_worked']:.0%}"


def run_arm(name: str, start: Path, prompts: str, args: argparse.Namespace) -> tuple[Path, float, int]:
    overrides = {"name": f"rl-exp-{name.replace('+', '-')}", "out": args.out, "rl_prompt": prompts,
                 **({"max_steps": args.steps} if args.steps else {}),
                 **parse_overrides(TrainConfig, args.set)}
    config = stage_config("rl", init_from=str(start), data="arith", **overrides)
    trainer = Trainer(config)
    trainer.subscribe(lambda e: e["type"] == "step" and e["step"] % 10 == 0 and print(
        f"  [{name}] step {e['step']}: reward {e['reward_mean']:.3f} accuracy {e['accuracy']:.1%} "
        f"step-by-step {e['step_by_step_share']:.0%} length {e['completion_length']:.0f} kl {e['kl']:.4f} "
        f"({e['elapsed']:.0f} s)", flush=True))
    started = time.perf_counter()
    end = trainer.run()
    if end["reason"] != "finished":
        raise SystemExit(f"{name}: {end.get('message')}")
    return trainer.run_dir, time.perf_counter() - started, trainer.step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pretrain", type=Path, default=Path("runs/pretrain"))
    parser.add_argument("--sft", type=Path, default=Path("runs/sft"))
    parser.add_argument("--arms", default="pure,cot,sft+rl", help=f"comma-separated: {', '.join(ARMS)}")
    parser.add_argument("--steps", type=int, default=0, help="RL steps per arm (0 = the recipe's)")
    parser.add_argument("--eval-n", type=int, default=200, help="held-out problems to score")
    parser.add_argument("--out", default="runs")
    parser.add_argument("--set", action="append", default=[], help="TrainConfig override for every arm")
    parser.add_argument("--score", nargs="+", type=Path, default=None,
                        help="only measure these checkpoints (runs or step folders), train nothing")
    args = parser.parse_args()
    records = held_out(None, args.eval_n)
    if args.score:
        print("| checkpoint | greedy CoT acc | neutral-prompt acc | step-by-step share |\n| --- | --- | --- | --- |")
        for checkpoint in args.score:
            print(f"| {checkpoint} | {accuracy_cells(evaluate(checkpoint, records))} |", flush=True)
        return
    starts = {"pretrain": args.pretrain, "sft": args.sft}
    before: dict[str, dict[str, float]] = {}
    rows = []
    for name in args.arms.split(","):
        if name not in ARMS:
            raise SystemExit(f"--arms: unknown arm {name!r} (choose from {', '.join(ARMS)})")
        start_name, prompts = ARMS[name]
        if start_name not in before:
            before[start_name] = evaluate(starts[start_name], records)
            rows.append((start_name, "-", "-", before[start_name]))
        print(f"{name}: RL from {starts[start_name]} on {prompts} prompts", flush=True)
        run_dir, seconds, steps = run_arm(name, starts[start_name], prompts, args)
        rows.append((f"{start_name} + RL ({prompts} prompts)", str(steps), f"{seconds / 60:.1f} min",
                     evaluate(run_dir, records)))
    print(f"\n{len(records)} held-out problems (llm_core/experiment/data/arith/eval.json), greedy\n")
    print("| stage | steps | wall time | greedy CoT acc | neutral-prompt acc | step-by-step share |")
    print("| --- | --- | --- | --- | --- | --- |")
    for stage, steps, wall, m in rows:
        print(f"| {stage} | {steps} | {wall} | {accuracy_cells(m)} |")


if __name__ == "__main__":
    from script_errors import run_script

    run_script(main)
