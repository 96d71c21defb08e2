"""Distillation on the embedded experiment: what a quarter-size student gets from a teacher, at equal time.

Three arms train the same student shape (`tiny-student`, 0.50M parameters; the teacher is `tiny`, 1.93M)
for the same wall-clock training budget each, on the teacher's tokenizer:
1. scratch: next-token prediction on pretrain.txt.gz (the pretraining recipe);
2. logits: logit distillation from the teacher on pretrain.txt.gz (Hinton et al. 2015; T, alpha from the
   distill defaults or --set), the teacher's forward in every step, so fewer steps fit the budget;
   logits-cache: the same with the teacher's top-k logits cached on disk first (`kd_cache`; the writing time
   is reported separately, it is paid once), so its steps cost what the scratch arm's do;
3. traces: the teacher first writes N chain-of-thought solutions for the first K problems of
   instructions.json, only verified ones are kept (DeepSeek-R1 style rejection sampling), and the student is
   trained on them from scratch (SFT); the generation time is reported separately (it is paid once).

Each arm's max_steps is set from its own measured step time so the LR schedule ends inside the budget; a
hard stop at the budget catches a slower-than-measured machine. Columns: parameters, training wall time
(+ trace generation), steps, greedy chain-of-thought accuracy on the first --eval problems of eval.json
(held out: no overlap with the training files), decode tokens/s (greedy CoT answers), and the teacher.

    python benchmarks/distill_experiment.py --teacher runs/pretrain --budget 120 --eval 100 --trace-problems 300

Writes OUT/distill_experiment.json and prints a Markdown table. The timing is of a shared 2-core machine:
other processes move it by 10-20%.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's llm_core

from llm_core.distill import STATS_FILE, trace_distillation  # noqa: E402
from llm_core.distill.recipe import distill_config  # noqa: E402
from llm_core.engine import RESPONSE_STOPS, Engine, SamplingParams  # noqa: E402
from llm_core.experiment import default_paths  # noqa: E402
from llm_core.training import Trainer, load_checkpoint, stage_config  # noqa: E402
from llm_core.training.loading import TOKENIZER_DIR, resolve_step_dir, run_dir_of  # noqa: E402

STUDENT = "tiny-student"


def cot_accuracy(model: Any, tokenizer: Any, problems: list[dict[str, Any]]) -> tuple[float, float]:
    """(greedy CoT accuracy, decode tokens/s over all answers) on the problems."""
    engine = Engine(model, tokenizer)
    greedy = SamplingParams(stop=RESPONSE_STOPS, truncate=True)
    correct, tokens, seconds = 0, 0, 0.0
    for p in problems:
        start = time.perf_counter()
        answer = engine.answer(p["question"], mode="cot", max_new_tokens=256, params=greedy)
        seconds += time.perf_counter() - start
        correct += answer.answer == p["answer"]
        tokens += answer.tokens
    return correct / len(problems), tokens / max(seconds, 1e-9)


def fit_steps(config: Any, budget: float, build: Any) -> Any:
    """`config` with max_steps = what fits `budget` seconds at this arm's measured step time."""
    probe = build(config.with_overrides(name=config.name + "-probe", max_steps=1000))
    per_step = probe.estimate(measure_steps=3)["seconds_per_step"] * 1.15  # the fastest step, plus slack
    probe.close()  # its run lock
    shutil.rmtree(probe.run_dir, ignore_errors=True)
    steps = max(10, int(budget / per_step))
    return config.with_overrides(max_steps=steps, eval_every=steps, checkpoint_every=steps, eval_batches=2,
                                 sample_tokens=0), per_step


def train_within(trainer: Trainer, budget: float) -> float:
    """Run to the end of the schedule or to `budget` seconds of training; the training seconds used."""
    trainer.subscribe(lambda e: e["type"] == "step" and e["elapsed"] > budget and trainer.stop())
    trainer.run()
    return trainer.elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--teacher", required=True, help="A pretrained teacher checkpoint (run or step folder).")
    parser.add_argument("--budget", type=float, default=120.0, help="Training seconds per arm.")
    parser.add_argument("--eval", type=int, default=100, help="Held-out problems for the accuracy.")
    parser.add_argument("--trace-problems", type=int, default=300, help="Problems the teacher writes traces for.")
    parser.add_argument("--trace-samples", type=int, default=2, help="Traces sampled per problem.")
    parser.add_argument("--arms", default="scratch,logits,logits-cache,traces", help="Which arms to run.")
    parser.add_argument("--topk", type=int, default=32, help="Teacher logits kept per position (logits-cache).")
    parser.add_argument("--out", default="runs/distill-experiment", help="Folder for the runs and the result.")
    parser.add_argument("--set", dest="sets", action="append", default=[], help="TrainConfig key=value for all arms.")
    args = parser.parse_args()

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%H%M%S")
    problems = json.loads(default_paths()["eval"].read_text())[: args.eval]
    teacher = load_checkpoint(args.teacher)
    tokenizer_dir = str(run_dir_of(resolve_step_dir(args.teacher)) / TOKENIZER_DIR)
    common = dict(out=str(out), tokenizer=tokenizer_dir)
    rows: list[dict[str, Any]] = []

    acc, tps = cot_accuracy(teacher.model, teacher.tokenizer, problems)
    rows.append({"arm": "teacher (tiny, reference)", "parameters": teacher.model.num_parameters(),
                 "wall_seconds": None, "steps": teacher.step, "cot_accuracy": acc, "decode_tokens_per_s": tps})
    print(f"teacher: {acc:.1%} CoT, {tps:.0f} tokens/s", flush=True)

    for arm in args.arms.split(","):
        extra = ""
        if arm == "scratch":
            config = stage_config("pretrain", model=STUDENT, name=f"scratch-{stamp}", **common).with_overrides(args.sets)
            config, per_step = fit_steps(config, args.budget, Trainer)
            trainer = Trainer(config)
        elif arm == "logits":
            config = distill_config(args.teacher, STUDENT, "logits", name=f"logits-{stamp}", **common)
            config, per_step = fit_steps(config.with_overrides(args.sets), args.budget, Trainer)
            trainer = Trainer(config)
        elif arm == "logits-cache":
            # The same logit distillation, the teacher's top-k logits written to disk first (paid once, reported
            # apart like the traces' generation): the timed steps never run the teacher.
            config = distill_config(args.teacher, STUDENT, "logits", name=f"logits-cache-{stamp}",
                                    kd_cache=str(out / f"teacher-top{args.topk}-{stamp}"), kd_topk=args.topk, **common)
            config = config.with_overrides(args.sets)
            writer = Trainer(config.with_overrides(name=config.name + "-writer"))  # writes the cache
            m = writer.objective.cache_manifest
            writer.close()
            shutil.rmtree(writer.run_dir, ignore_errors=True)
            extra = (f"+ {m['seconds']:.0f} s writing the top-{args.topk} cache once ({m['bytes'] / 2**20:.0f} MiB, "
                     f"teacher mass outside it {m['tail_mass']:.1%})")
            print(f"logits-cache: {extra}", flush=True)
            config, per_step = fit_steps(config, args.budget, Trainer)
            trainer = Trainer(config)
        elif arm == "traces":
            config = distill_config(args.teacher, STUDENT, "traces", name=f"traces-{stamp}",
                                    trace_problems=args.trace_problems, trace_samples=args.trace_samples,
                                    val_fraction=0.0, **common)  # a few hundred traces: all of them train
            config = config.with_overrides(args.sets)
            trainer = trace_distillation(config)  # writes the traces into the run folder first
            stats = json.loads((trainer.run_dir / STATS_FILE).read_text())
            extra = (f"+ {stats['seconds']:.0f} s trace generation ({stats['kept']} traces kept of "
                     f"{stats['sampled']}, acceptance {stats['acceptance_rate']:.1%})")
            print(f"traces: {extra}", flush=True)
            probe_config = trainer.config
            fitted, per_step = fit_steps(probe_config, args.budget, lambda c: Trainer(c, run_dir=out / c.name))
            # The run folder (and its traces) exists: restart the Trainer there with the fitted schedule.
            shutil.rmtree(trainer.run_dir / "checkpoints", ignore_errors=True)
            trainer.close()  # release the run folder's lock: the fitted Trainer takes it over
            trainer = Trainer(fitted.with_overrides(name=config.name), run_dir=trainer.run_dir)
        else:
            raise SystemExit(f"unknown arm {arm!r}")
        print(f"{arm}: {trainer.config.max_steps} steps at ~{per_step:.3f} s/step", flush=True)
        seconds = train_within(trainer, args.budget)
        model = load_checkpoint(trainer.run_dir).model
        acc, tps = cot_accuracy(model, trainer.tokenizer, problems)
        rows.append({"arm": arm, "parameters": model.num_parameters(), "wall_seconds": seconds,
                     "steps": trainer.step, "cot_accuracy": acc, "decode_tokens_per_s": tps, "note": extra,
                     "run": str(trainer.run_dir)})
        print(f"{arm}: {trainer.step} steps in {seconds:.0f} s, {acc:.1%} CoT, {tps:.0f} tokens/s", flush=True)

    result = {"budget_seconds": args.budget, "eval_problems": len(problems), "teacher": str(teacher.path),
              "rows": rows}
    (out / "distill_experiment.json").write_text(json.dumps(result, indent=1))
    print(f"\n{len(problems)} held-out problems, {args.budget:.0f} s training budget per arm\n")
    print("| student | parameters | wall time (training) | steps | greedy CoT accuracy | decode tokens/s |")
    print("| --- | --- | --- | --- | --- | --- |")
    for r in rows:
        wall = "-" if r["wall_seconds"] is None else f"{r['wall_seconds']:.0f} s {r.get('note', '')}".strip()
        print(f"| {r['arm']} | {r['parameters']:,} | {wall} | {r['steps']} | {r['cot_accuracy']:.1%} | "
              f"{r['decode_tokens_per_s']:.0f} |")


if __name__ == "__main__":
    from script_errors import run_script

    run_script(main)
