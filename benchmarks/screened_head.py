"""The bf16 screen of the head (`llm_core.engine.screened_head`) on a trained model rather than random weights.

Random weights give flat logits; a trained head spreads them, and how many tokens the screen must recompute
in fp32 a step (and how often it falls back to the fp32 head) depends on that. This trains gpt2-mini on
the-verdict.txt with GPT-2's tokenizer for `--steps` steps (8 x 128 tokens, bf16 autocast where the CPU
has bf16), then decodes greedily from a few prompts with the screen on and off: the same tokens (checked),
fp32 logits recomputed a step, fallbacks, and tokens/s of each in paired rounds (one process); then samples
at temperature 0.8, batch 1 and N = 8 rows, screen on and off (rejection sampling: the same distribution,
other tokens than the fp32 head's for a given seed).

Needs ../shared/data/the-verdict.txt and the GPT-2 BPE files (TIKTOKEN_CACHE_DIR, default
../shared/tiktoken-cache).

    python benchmarks/screened_head.py [--steps 300] [--rounds 3]
"""
from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import torch

import peers
from llm_core import GPT, Engine, GPTConfig
from llm_core.device import autocast
from llm_core.engine import SamplingParams
from llm_core.engine.fast import FastPaths

SHARED = Path(__file__).resolve().parents[2] / "shared"
PROMPTS = ["I had always thought Jack Gisburn", "The picture was", "She said", "It was the last"]


def train(steps: int, ids: torch.Tensor, T: int = 128, batch: int = 8) -> GPT:
    model = GPT(GPTConfig.preset("gpt2-mini"))
    model.reset_parameters(torch.Generator().manual_seed(0))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(0)
    for step in range(steps):
        starts = torch.randint(0, ids.numel() - T - 1, (batch,), generator=g).tolist()
        x = torch.stack([ids[s : s + T] for s in starts])  # (B, T)
        y = torch.stack([ids[s + 1 : s + T + 1] for s in starts])
        with autocast(torch.device("cpu")):
            loss = model(x, y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 100 == 0 or step == steps - 1:
            print(f"   step {step}: loss {loss.item():.3f}", flush=True)
    return model.eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--new", type=int, default=100, help="new tokens a prompt")
    args = parser.parse_args()
    os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(SHARED / "tiktoken-cache"))
    text_file = SHARED / "data" / "the-verdict.txt"
    if not text_file.is_file():
        raise SystemExit(f"{text_file}: not found (the shared reference data)")
    from llm_core.tokenizer import load_tokenizer

    tok = load_tokenizer("gpt2")
    ids = torch.tensor(tok.encode(text_file.read_text(encoding="utf-8")))
    print(peers.machine_line())
    print(f"training gpt2-mini on {text_file.name} ({ids.numel()} tokens), {args.steps} steps of 8 x 128")
    model = train(args.steps, ids)
    screened, plain = Engine(model, tok), Engine(model, tok, FastPaths(screen=False))
    params = SamplingParams(stop_ids=())  # greedy, no early stop
    prompts = [tok.encode(p) for p in PROMPTS]
    same = all(screened.generate_ids(p, args.new, params) == plain.generate_ids(p, args.new, params)
               for p in prompts)
    info = screened.decoder.describe()
    print(f"\ngreedy, {len(prompts)} prompts x {args.new} tokens: same tokens screened and unscreened: {same}")
    print(f"   {info['screen_candidates'] / max(1, info['screened_steps']):.1f} fp32 logits recomputed a step "
          f"({info['screen_candidates']} over {info['screened_steps']} steps), "
          f"{info['screen_fallbacks']} steps fell back to the fp32 head")
    run = lambda engine: lambda: [engine.generate_ids(p, args.new, params) for p in prompts]  # noqa: E731
    times = peers.paired_rounds({"screen on": run(screened), "screen off": run(plain)}, args.rounds)
    n = len(prompts) * args.new
    for name, ts in times.items():
        print(f"   {name:<11}{n / statistics.median(ts):8.1f} tokens/s")
    ratio, per_round = peers.median_ratio(times["screen off"], times["screen on"])
    print(f"   screen on / off: {ratio:.2f}x median (rounds {', '.join(f'{r:.2f}' for r in per_round)})")

    # Temperature sampling: rejection from the screen (`sampling.draw_screened`), batch 1 and 8 rows
    sample = SamplingParams(temperature=0.8, seed=0, stop_ids=())
    before = dict(screened.decoder.describe())
    one = lambda engine: lambda: [engine.generate_ids(p, args.new, sample) for p in prompts]  # noqa: E731
    eight = lambda engine: lambda: [  # noqa: E731
        s for p in prompts for b in engine.sample_batch(p, 8, args.new, sample) for s in b]
    times = peers.paired_rounds({"batch 1, screen on": one(screened), "batch 1, screen off": one(plain),
                                 "N = 8, screen on": eight(screened), "N = 8, screen off": eight(plain)},
                                args.rounds)
    info = screened.decoder.describe()
    rows = info["screened_rows"] - before["screened_rows"]
    tries = info["screen_candidates"] - before["screen_candidates"]
    print(f"\nsampling at temperature 0.8, {len(prompts)} prompts x {args.new} tokens, batch 1 and N = 8 rows: "
          f"{tries / max(1, rows):.3f} draws a row-step (a fraction {rows / max(1, tries):.3f} accepted), "
          f"{info['screen_fallbacks'] - before['screen_fallbacks']} steps fell back to the fp32 head")
    for name, ts in times.items():
        rows = 8 if name.startswith("N") else 1
        print(f"   {name:<20}{rows * n / statistics.median(ts):8.1f} tokens/s")
    for size in ("batch 1", "N = 8"):
        ratio, per_round = peers.median_ratio(times[f"{size}, screen off"], times[f"{size}, screen on"])
        print(f"   {size}: screen on / off {ratio:.2f}x median (rounds {', '.join(f'{r:.2f}' for r in per_round)})")
    print(f"\n{peers.machine_line()}")


if __name__ == "__main__":
    start = time.perf_counter()
    main()
    print(f"({time.perf_counter() - start:.0f} s)")
