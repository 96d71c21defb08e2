"""Memory and step time of full finetuning vs LoRA vs DoRA on the gpt2-small shape.

    python benchmarks/lora.py                       # batch 2 x 128 tokens, rank 8, attn+mlp, 2 timed steps
    python benchmarks/lora.py --batch 4 --context 256 --rank 16 --steps 5

Each mode runs in its own subprocess (same seed, same data, AdamW), so peak memory is that mode's alone:
on CUDA `torch.cuda.max_memory_allocated`, on CPU the process's peak resident set size (ru_maxrss),
reported both in total and as the growth over the freshly built model. Full finetuning pays for fp32
gradients and two AdamW moments of all 124M parameters; LoRA/DoRA only for those of the adapters (plus
DoRA's per-layer norm). Step time is the best of `--steps` timed optimizer steps after one warm-up.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import torch
import torch.nn.functional as F


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def run_one(mode: str, args: argparse.Namespace) -> dict:
    from llm_core.adapters import adapter_summary, add_adapters
    from llm_core.model import GPT, GPTConfig

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    cfg = GPTConfig.preset("gpt2-small", context_length=args.context)
    model = GPT(cfg)
    model.reset_parameters(torch.Generator().manual_seed(0))
    model.to(device)
    if mode != "full":
        add_adapters(model, kind=mode, rank=args.rank, alpha=2 * args.rank, targets=args.targets,
                     generator=torch.Generator().manual_seed(1))
    summary = adapter_summary(model)
    g = torch.Generator().manual_seed(2)
    batch = torch.randint(0, cfg.vocab_size, (args.batch, args.context + 1), generator=g).to(device)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    built_mb = torch.cuda.memory_allocated() / 2**20 if device.type == "cuda" else _rss_mb()

    times = []
    for step in range(args.steps + 1):
        start = time.perf_counter()
        logits = model(batch[:, :-1])
        loss = F.cross_entropy(logits.flatten(0, 1), batch[:, 1:].flatten())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if step:  # step 0 is the warm-up (allocations, optimizer state)
            times.append(time.perf_counter() - start)
    peak_mb = torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else _rss_mb()
    return {
        "mode": mode,
        "trainable": summary.trainable,
        "total": summary.total,
        "step_s": min(times),
        "peak_mb": peak_mb,
        "growth_mb": peak_mb - built_mb,
        "device": device.type,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--context", type=int, default=128)
    parser.add_argument("--rank", type=int, default=8)
    parser.add_argument("--targets", default="attn,mlp")
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--modes", default="full,lora,dora")
    parser.add_argument("--child", help=argparse.SUPPRESS)  # internal: run one mode and print JSON
    args = parser.parse_args()

    if args.child:
        print(json.dumps(run_one(args.child, args)))
        return

    rows = []
    for mode in args.modes.split(","):
        cmd = [sys.executable, __file__, "--child", mode] + [
            f"--{k}={v}" for k, v in (("batch", args.batch), ("context", args.context), ("rank", args.rank),
                                     ("targets", args.targets), ("steps", args.steps))
        ]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        rows.append(json.loads(out.strip().splitlines()[-1]))

    memory = "peak CUDA memory" if rows[0]["device"] == "cuda" else "peak RSS"
    print(f"gpt2-small shape, batch {args.batch} x {args.context} tokens, rank {args.rank} on {args.targets}, "
          f"AdamW, {rows[0]['device']}")
    print(f"{'mode':<6} {'trainable':>22} {memory + ' MB':>18} {'growth MB':>10} {'step s':>8} "
          f"{'mem vs full':>12} {'time vs full':>13}")
    full = next((r for r in rows if r["mode"] == "full"), rows[0])
    for r in rows:
        share = f"{r['trainable'] / 1e6:.2f}M ({100 * r['trainable'] / r['total']:.1f}%)"
        print(f"{r['mode']:<6} {share:>22} {r['peak_mb']:>18,.0f} {r['growth_mb']:>10,.0f} {r['step_s']:>8.2f} "
              f"{r['growth_mb'] / full['growth_mb']:>11.2f}x {r['step_s'] / full['step_s']:>12.2f}x")


if __name__ == "__main__":
    main()
