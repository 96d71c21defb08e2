"""Training speed against the real peers at the same dtype, beside the compute bound (issue 15).

Sides (gpt2-mini: width 384, 6 layers, context 256, vocab 50257; batch 4 x 256; the same random weights
and tokens; one process; interleaved paired rounds; `peers.py`):
- ours: `GPT.forward(ids, targets)` (the fused chunked head + cross-entropy) and the Trainer's optimizer
  (`llm_core.training.optim.build_optimizer`: fused AdamW), as the Trainer runs a step;
- llms-from-scratch: its ch04 `GPTModel`, the book's loss (`cross_entropy(logits.flatten(0, 1), y)`) and
  `torch.optim.AdamW` with its defaults;
- transformers: `GPT2LMHeadModel(input_ids, labels=input_ids)` (its own shifted loss) and the same AdamW.
Each in fp32 and under bf16 autocast (`--dtypes`), every side alike. Prints tokens/s, the median of the
per-round ratios, and MFU: model FLOPs per token (`GPT.flops_per_token`, 6N + attention) x tokens/s over
the matmul peak measured here (2048^3, best of 5) in that dtype. Freed memory is kept in the process as the
Trainer keeps it (`llm_core.host_memory`; `--host-memory off` for glibc's defaults): it is process-wide, so
every side gets it, and `benchmarks/host_memory.py` measures what it is worth.

`--default-experiment BEFORE` instead times `workbench train` of the default experiment (the tiny preset
on the arithmetic corpus, batch 16 x 256) in a checkout BEFORE (e.g. `git worktree add /tmp/before
<commit>`) against this one, alternating, `--steps` steps each, reading tokens/s from metrics.jsonl.

`--attention` times the default experiment's Trainer in one process with attention's backward in fp32
at short contexts (`llm_core.model.CPU_FP32_ATTENTION_MAX_T`, what the model does) against the bf16 kernel
(the limit set to 0, as before), alternating blocks of `--steps` steps; it needs a bf16 CPU.

    python benchmarks/train_speed.py [--rounds 3] [--steps 3] [--dtypes fp32,bf16] [--threads N] [--host-memory off]
    python benchmarks/train_speed.py --default-experiment /path/to/old/checkout [--rounds 2] [--steps 60]
    python benchmarks/train_speed.py --attention [--rounds 10] [--steps 4]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F

import peers
from llm_core import GPT, GPTConfig
from llm_core.device import supports_bf16
from llm_core.host_memory import reuse_freed_memory
from llm_core.training import TrainConfig
from llm_core.training.optim import build_optimizer

REPO = Path(__file__).resolve().parents[1]


def make_sides(model: GPT, x: torch.Tensor, y: torch.Tensor, bf16: bool) -> dict:
    """One training step (forward, loss, backward, AdamW) of each side, as a callable."""
    ctx = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if bf16 else (lambda: torch.autocast("cpu", enabled=False))
    ours = GPT(model.config)
    ours.load_state_dict(model.state_dict())
    ours.train()
    ours_opt = build_optimizer(ours, TrainConfig(peak_lr=1e-4, min_lr=1e-5, initial_lr=1e-5))
    ref = peers.reference_model(model).train()
    ref_opt = torch.optim.AdamW(ref.parameters(), lr=1e-4, weight_decay=0.1)
    hf = peers.hf_model(model).train()
    hf_opt = torch.optim.AdamW(hf.parameters(), lr=1e-4, weight_decay=0.1)
    full = torch.cat([x, y[:, -1:]], dim=1)[:, :-1]  # = x: HF shifts the labels itself

    def step_ours():
        with ctx():
            loss = ours(x, y)
        loss.backward()
        ours_opt.step()
        ours_opt.zero_grad(set_to_none=True)
        return loss

    def step_ref():
        with ctx():
            logits = ref(x)
            loss = F.cross_entropy(logits.flatten(0, 1).float(), y.flatten())
        loss.backward()
        ref_opt.step()
        ref_opt.zero_grad(set_to_none=True)
        return loss

    def step_hf():
        with ctx():
            loss = hf(input_ids=full, labels=full).loss
        loss.backward()
        hf_opt.step()
        hf_opt.zero_grad(set_to_none=True)
        return loss

    return {"ours": step_ours, "llms-from-scratch ch04": step_ref, "transformers GPT2LMHeadModel": step_hf}


def part_peers(rounds: int, steps: int, dtypes: list[str]) -> None:
    cfg = GPTConfig.preset("gpt2-mini")
    model = GPT(cfg)
    model.reset_parameters(torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(1)
    seq = torch.randint(0, cfg.vocab_size, (4, cfg.context_length + 1), generator=g)
    x, y = seq[:, :-1], seq[:, 1:]
    tokens = x.numel()
    flops = model.flops_per_token(training=True)
    for name in dtypes:
        bf16 = name == "bf16"
        if bf16 and not supports_bf16(torch.device("cpu")):
            print("\nbf16: this CPU has no bf16 arithmetic (skipped)")
            continue
        sides = make_sides(model, x, y, bf16)
        losses = {k: float(fn().detach()) for k, fn in sides.items()}  # also the warm-up
        runs = {k: (lambda fn=fn: [fn() for _ in range(steps)]) for k, fn in sides.items()}
        times = peers.paired_rounds(runs, rounds)
        peak = peers.matmul_peak(torch.bfloat16 if bf16 else torch.float32)
        print(f"\ngpt2-mini, batch 4 x 256, {'bf16 autocast' if bf16 else 'fp32'} on every side, {steps} steps a "
              f"round; first-step losses {', '.join(f'{v:.4f}' for v in losses.values())}")
        print(f"   {name} matmul peak measured: {peak / 1e9:.0f} GFLOP/s; model FLOPs {flops / 1e6:.0f} M per token")
        for k, ts in times.items():
            rate = steps * tokens / statistics.median(ts)
            print(f"   {k:<30}{rate:8.0f} tokens/s  MFU {rate * flops / peak:5.1%}   (rounds: "
                  f"{', '.join(f'{steps * tokens / t:.0f}' for t in ts)})")
        for k, ts in times.items():
            if k != "ours":
                ratio, per_round = peers.median_ratio(ts, times["ours"])
                print(f"   ours / {k}: {ratio:.2f}x median (rounds {', '.join(f'{r:.2f}' for r in per_round)})")


def optimizer_step_ms(model: GPT, repeats: int = 5) -> dict[str, float]:
    """Milliseconds of one AdamW update of `model`'s parameters: the per-tensor loop the Trainer used
    before, foreach, and fused (what `build_optimizer` picks)."""
    for p in model.parameters():
        p.grad = torch.randn_like(p)
    out = {}
    for name, kw in (("loop (before)", dict(foreach=False)), ("foreach", dict(foreach=True)), ("fused", dict(fused=True))):
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4, **kw)
        opt.step()
        best = min(peers._timed(opt.step) for _ in range(repeats))
        out[name] = best * 1e3
    model.zero_grad(set_to_none=True)
    return out


def run_workbench_train(checkout: Path, steps: int, out: Path, name: str) -> float:
    """tokens/s (median of the logged steps after the first 5) of `workbench train` run from `checkout`."""
    env = {**os.environ, "PYTHONPATH": str(checkout)}
    cmd = [sys.executable, "-m", "workbench.cli", "train", "--out", str(out), "--set", f"name={name}",
           "--set", f"max_steps={steps}", "--set", f"eval_every={steps}", "--force"]
    subprocess.run(cmd, cwd=checkout, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    rates = []
    for line in (out / name / "metrics.jsonl").read_text().splitlines():
        event = json.loads(line)
        if event.get("type") == "step" and event.get("step", 0) >= 5:
            rates.append(event["tokens_per_s"])
    return statistics.median(rates)


def part_default_experiment(before: Path, rounds: int, steps: int) -> None:
    print(f"\n`workbench train` of the default experiment, {steps} steps, before = {before}, after = {REPO}")
    rates: dict[str, list[float]] = {"before": [], "after": []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(rounds):
            for label, checkout in (("before", before), ("after", REPO)):
                rates[label].append(run_workbench_train(checkout, steps, Path(tmp), f"{label}{r}"))
                print(f"   round {r + 1} {label}: {rates[label][-1]:,.0f} tokens/s  ({peers.machine_line()})")
    ratio, per_round = peers.median_ratio(rates["before"], rates["after"])  # (a rate ratio: after / before)
    ratio, per_round = 1 / ratio, [1 / r for r in per_round]
    print(f"   before {statistics.median(rates['before']):,.0f} tokens/s, after {statistics.median(rates['after']):,.0f}: "
          f"{ratio:.2f}x median (rounds {', '.join(f'{r:.2f}' for r in per_round)}; goal 1.5x)")


def part_attention(rounds: int, steps: int) -> None:
    import llm_core.model as model_module
    from llm_core.training import Trainer

    if not supports_bf16(torch.device("cpu")):
        raise SystemExit("--attention: this CPU has no bf16 arithmetic, so training runs attention in fp32 anyway")
    limit = model_module.CPU_FP32_ATTENTION_MAX_T
    seconds: dict[str, list[float]] = {"bf16": [], "fp32": []}
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(TrainConfig(out=tmp, name="attention", max_steps=10**6, eval_every=10**6,
                                      checkpoint_every=10**6))
        tokens = trainer.config.batch_size * trainer.model.config.context_length  # a step's tokens
        print(f"\nThe default experiment's Trainer ({trainer.config.model} preset, batch {trainer.config.batch_size}"
              f" x {trainer.model.config.context_length}, bf16 autocast), one process: attention in fp32 up to "
              f"T = {limit} vs the bf16 kernel, {rounds} paired rounds of {steps} steps")

        def steps_timed() -> None:
            for _ in range(steps):
                trainer.train_step()

        try:
            for _ in range(3):
                trainer.train_step()
            for r in range(rounds):
                for label in (("bf16", "fp32") if r % 2 == 0 else ("fp32", "bf16")):
                    model_module.CPU_FP32_ATTENTION_MAX_T = limit if label == "fp32" else 0
                    trainer.train_step()  # the first step after a switch is not timed
                    seconds[label].append(peers._timed(steps_timed) / steps)
                print(f"   round {r + 1}: bf16 attention {seconds['bf16'][-1] * 1e3:.0f} ms a step, fp32 "
                      f"{seconds['fp32'][-1] * 1e3:.0f} ms  ({peers.machine_line()})")
        finally:
            model_module.CPU_FP32_ATTENTION_MAX_T = limit
            trainer.close()
    ratio, per_round = peers.median_ratio(seconds["bf16"], seconds["fp32"])
    print(f"   tokens/s: bf16 attention {tokens / statistics.median(seconds['bf16']):,.0f}, fp32 "
          f"{tokens / statistics.median(seconds['fp32']):,.0f}: {ratio:.2f}x median "
          f"(rounds {', '.join(f'{x:.2f}' for x in per_round)})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="interleaved timed rounds (default 3)")
    parser.add_argument("--steps", type=int, default=None, help="steps per round (default 3; 60 for the default experiment)")
    parser.add_argument("--dtypes", default="fp32,bf16")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--host-memory", choices=["on", "off"], default="on",
                        help="keep freed memory in the process (llm_core.host_memory), as the Trainer does; "
                             "process-wide, so it applies to every side (default on)")
    parser.add_argument("--default-experiment", type=Path, default=None, metavar="BEFORE",
                        help="time `workbench train` from the checkout BEFORE against this one")
    parser.add_argument("--attention", action="store_true",
                        help="the Trainer with attention's backward in fp32 vs bf16, one process")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(peers.machine_line())
    if args.host_memory == "on" and reuse_freed_memory():
        print("freed memory kept in the process (llm_core.host_memory, as the Trainer sets it): every side gets it")
    if args.default_experiment is not None:
        if not (args.default_experiment / "workbench" / "cli.py").is_file():
            raise SystemExit(f"--default-experiment: {args.default_experiment} is not a checkout of this project")
        part_default_experiment(args.default_experiment.resolve(), args.rounds, args.steps or 60)
        return
    if args.attention:
        part_attention(args.rounds, args.steps or 4)
        return
    part_peers(args.rounds, args.steps or 3, args.dtypes.split(","))
    model = GPT(GPTConfig.preset("gpt2-mini"))
    ms = optimizer_step_ms(model)
    print(f"\nAdamW update of gpt2-mini's {model.num_parameters() / 1e6:.1f}M parameters: "
          + ", ".join(f"{k} {v:.0f} ms" for k, v in ms.items()))
    print(f"\n{peers.machine_line()}")


if __name__ == "__main__":
    main()
