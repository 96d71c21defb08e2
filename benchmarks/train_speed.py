"""Training speed against the real peers at the same dtype, beside the compute bound (issue 15).

Sides (gpt2-mini: width 384, 6 layers, context 256, vocab 50257; batch 4 x 256; the same random weights
and tokens; one process; interleaved paired rounds; `peers.py`):
- ours: `GPT.forward(ids, targets)` (the fused chunked head + cross-entropy) and the Trainer's optimizer
  (`llm_core.training.optim.build_optimizer`: fused AdamW), as the Trainer runs a step; in fp32 on a CPU
  where `llm_core.device.onednn_fp32_pays`, also ours with torch's own fp32 kernels (MKL), to show what
  the oneDNN route (`llm_core.onednn_linear`) is worth; under bf16 where the fused CPU kernels run, also
  ours with them switched off (`llm_core.cpu_kernels`: torch's softmax and GELU);
- llms-from-scratch: its ch04 `GPTModel`, the book's loss (`cross_entropy(logits.flatten(0, 1), y)`) and
  `torch.optim.AdamW` with its defaults;
- transformers: `GPT2LMHeadModel(input_ids, labels=input_ids)` (its own shifted loss) and the same AdamW.
Each in fp32 and under bf16 autocast (`--dtypes`), every side alike. Prints tokens/s, the median of the
per-round ratios, and MFU: model FLOPs per token (`GPT.flops_per_token`, 6N + attention) x tokens/s over
the matmul peak measured here (2048^3, best of 5, the faster of torch's kernel and oneDNN's) in that
dtype. Freed memory is kept in the process as the Trainer keeps it (`llm_core.host_memory`; `--host-memory
off` for glibc's defaults): it is process-wide, so every side gets it, and `benchmarks/host_memory.py`
measures what it is worth.

`--default-experiment BEFORE` instead times `workbench train` of the default experiment (the tiny preset
on the arithmetic corpus, batch 16 x 256) in a checkout BEFORE (e.g. `git worktree add /tmp/before
<commit>`) against this one, alternating, `--steps` steps each, reading tokens/s from metrics.jsonl.

`--attention` times causal attention's forward + backward on bf16 inputs, `llm_core.attention`'s blocked
kernel (what CPU bf16 training runs) against the CPU flash kernel in fp32 (what it ran before) and in bf16,
at the shapes of the default experiment, gpt2-mini and gpt2-small; then the default experiment's Trainer
with each kernel in one process, alternating blocks of `--steps` steps. It needs a bf16 CPU.

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
from llm_core import GPT, GPTConfig, attention, cpu_kernels
from llm_core.device import onednn_fp32_pays, supports_bf16, use_onednn_fp32
from llm_core.host_memory import reuse_freed_memory
from llm_core.training import TrainConfig
from llm_core.training.optim import AdamW, build_optimizer

REPO = Path(__file__).resolve().parents[1]


def make_sides(model: GPT, x: torch.Tensor, y: torch.Tensor, bf16: bool) -> dict:
    """One training step (forward, loss, backward, AdamW) of each side, as a callable."""
    ctx = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if bf16 else (lambda: torch.autocast("cpu", enabled=False))
    def our_step():
        ours = GPT(model.config)
        ours.load_state_dict(model.state_dict())
        ours.train()
        opt = build_optimizer(ours, TrainConfig(peak_lr=1e-4, min_lr=1e-5, initial_lr=1e-5))

        def step():
            with ctx():
                loss = ours(x, y)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            return loss

        return step

    step_ours = our_step()
    ref = peers.reference_model(model).train()
    ref_opt = torch.optim.AdamW(ref.parameters(), lr=1e-4, weight_decay=0.1)
    hf = peers.hf_model(model).train()
    hf_opt = torch.optim.AdamW(hf.parameters(), lr=1e-4, weight_decay=0.1)
    full = torch.cat([x, y[:, -1:]], dim=1)[:, :-1]  # = x: HF shifts the labels itself

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

    sides = {"ours": step_ours, "llms-from-scratch ch04": step_ref, "transformers GPT2LMHeadModel": step_hf}
    if not bf16 and onednn_fp32_pays():  # what the oneDNN route (`llm_core.onednn_linear`) is worth here
        step_torch_kernels = our_step()  # its own copy of the model and optimizer

        def step_ours_torch_kernels():
            use_onednn_fp32(False)
            try:
                return step_torch_kernels()
            finally:
                use_onednn_fp32(None)

        sides["ours, torch's fp32 kernels"] = step_ours_torch_kernels
    if bf16 and cpu_kernels.enabled():  # what the fused bf16 CPU kernels (`llm_core.cpu_kernels`) are worth here
        step_torch_ops = our_step()

        def step_ours_torch_ops():
            with cpu_kernels.switched(False):
                return step_torch_ops()

        sides["ours, cpu_kernels off"] = step_ours_torch_ops
    return sides


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
    before, foreach, and fused (what `build_optimizer` picks), all through `llm_core.training.optim.AdamW`;
    then torch's own fused AdamW, which takes the column-major tied embedding (`llm_core.embedding`) as it
    is strided."""
    for p in model.parameters():
        p.grad = torch.randn_like(p)
    out = {}
    for name, cls, kw in (("loop (before)", AdamW, dict(foreach=False)), ("foreach", AdamW, dict(foreach=True)),
                          ("fused", AdamW, dict(fused=True)),
                          ("torch's fused on the strided embedding", torch.optim.AdamW, dict(fused=True))):
        opt = cls(model.parameters(), lr=1e-4, **kw)
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


def flash_fp32(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, dropout_p: float = 0.0) -> torch.Tensor:
    """The CPU flash kernel in fp32 on bf16 inputs: what CPU bf16 training ran up to T = 512 before the
    blocked kernel (commit ce3a81d)."""
    with torch.autocast("cpu", enabled=False):
        y = F.scaled_dot_product_attention(q.float(), k.float(), v.float(), is_causal=True, dropout_p=dropout_p)
    return y.to(q.dtype)


def flash_bf16(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, dropout_p: float = 0.0) -> torch.Tensor:
    return F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=dropout_p)


ATTENTION_KERNELS = {"blocked (ours)": attention.causal_attention, "flash fp32": flash_fp32, "flash bf16": flash_bf16}


def part_attention(rounds: int, steps: int) -> None:
    """Causal attention forward + backward on bf16 inputs: `llm_core.attention`'s blocked kernel against the
    CPU flash kernel in fp32 and in bf16, per shape; then the default experiment's Trainer with each."""
    import llm_core.model as model_module
    from llm_core.training import Trainer

    if not supports_bf16(torch.device("cpu")):
        raise SystemExit("--attention: this CPU has no bf16 arithmetic, so training never takes the blocked kernel")
    print(f"\nCausal attention forward + backward, bf16 inputs, ms (best of 5 calls a round, {rounds} rounds)")
    shapes = {"default experiment 16 x 4 x 256 x 48": (16, 4, 256, 48), "same at T = 512": (16, 4, 512, 48),
              "gpt2-mini 4 x 6 x 256 x 64": (4, 6, 256, 64), "gpt2-small 2 x 12 x 1024 x 64": (2, 12, 1024, 64)}
    for label, shape in shapes.items():
        g = torch.Generator().manual_seed(0)
        q, k, v = (torch.randn(shape, generator=g).bfloat16().requires_grad_() for _ in range(3))
        dy = torch.randn(shape, generator=g).bfloat16()

        def call(fn) -> float:
            return min(peers._timed(lambda: fn(q, k, v).backward(dy)) for _ in range(5))

        for fn in ATTENTION_KERNELS.values():  # warm-up
            call(fn)
        times: dict[str, list[float]] = {name: [] for name in ATTENTION_KERNELS}
        for _ in range(rounds):  # the kernels interleaved within a round
            for name, fn in ATTENTION_KERNELS.items():
                times[name].append(call(fn))
        best = {name: statistics.median(ts) for name, ts in times.items()}  # (each a best of 5, in seconds)
        ours = best["blocked (ours)"]
        print(f"   {label:<38}" + "  ".join(f"{name} {t * 1e3:6.1f}" for name, t in best.items())
              + f"   flash fp32 / ours {best['flash fp32'] / ours:.2f}x, flash bf16 / ours {best['flash bf16'] / ours:.2f}x")

    seconds: dict[str, list[float]] = {name: [] for name in ATTENTION_KERNELS}
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(TrainConfig(out=tmp, name="attention", max_steps=10**6, eval_every=10**6,
                                      checkpoint_every=10**6))
        tokens = trainer.config.batch_size * trainer.model.config.context_length  # a step's tokens
        print(f"\nThe default experiment's Trainer ({trainer.config.model} preset, batch {trainer.config.batch_size}"
              f" x {trainer.model.config.context_length}, bf16 autocast) with each kernel, one process, "
              f"{rounds} rounds of {steps} steps each")

        def steps_timed() -> None:
            for _ in range(steps):
                trainer.train_step()

        try:
            for _ in range(3):
                trainer.train_step()
            for r in range(rounds):
                order = list(ATTENTION_KERNELS) if r % 2 == 0 else list(reversed(ATTENTION_KERNELS))
                for name in order:
                    model_module.causal_attention = ATTENTION_KERNELS[name]  # what each Block calls
                    trainer.train_step()  # the first step after a switch is not timed
                    seconds[name].append(peers._timed(steps_timed) / steps)
                print(f"   round {r + 1}: " + ", ".join(f"{name} {seconds[name][-1] * 1e3:.0f} ms a step"
                                                       for name in ATTENTION_KERNELS) + f"  ({peers.machine_line()})")
        finally:
            model_module.causal_attention = attention.causal_attention
            trainer.close()
    for name in ATTENTION_KERNELS:
        print(f"   {name:<16}{tokens / statistics.median(seconds[name]):8,.0f} tokens/s")
    for name in ("flash fp32", "flash bf16"):
        ratio, per_round = peers.median_ratio(seconds[name], seconds["blocked (ours)"])
        print(f"   ours / {name}: {ratio:.2f}x median (rounds {', '.join(f'{x:.2f}' for x in per_round)})")


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
                        help="the blocked attention kernel vs the CPU flash kernel (fp32, bf16), alone and in the Trainer")
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
