"""What the Engine's batching and window buy, measured against the Engine doing it the long way.

(Speed against the real peers, llms-from-scratch and transformers, is `benchmarks/decode_speed.py`.)
gpt2-mini shape (GPTConfig.preset("gpt2-mini"): width 384, 6 layers, 6 heads, context 256, vocab 50257),
random weights, fp32, CPU. Prints:
2. majority vote, N = 8 samples of 128 tokens at temperature 0.8: one batched prefill + batch-of-8 decode vs
   8 sequential generations. Target: wall time <= 0.35x.
3. 4096 new tokens with window 256: cache bytes and process RSS at 512 and 4096 tokens (flat), tokens/s of
   the first 512 vs the last 512 tokens (target: within 15%).
4. beam search, B = 4 beams x 128 tokens, no stopping: one shared prefill + B rows reordered in place per
   step (Engine.beam_search) vs B separate greedy decodes of 128 tokens each, in tokens decoded per second.

Run: .venv/bin/python benchmarks/generate.py [--parts 2,3,4] [--rounds 2]
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import torch

from llm_core import Engine, GPT, GPTConfig
from llm_core.engine import SamplingParams, derive_seed

NO_STOP = SamplingParams(stop_ids=())  # greedy, never stopping early


class FakeTokenizer:
    """The engine only needs eot_id here (ids in, ids out)."""

    eot_id = 50256
    n_vocab = 50257

    def decode_bytes(self, ids) -> bytes:
        return b""


def best_of(fn, repeats: int) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t0)
    return best, result


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def bench_vote(engine: Engine, prompt: list[int], rounds: int) -> None:
    """2. Majority vote sampling: batched vs sequential."""
    seed, n = 7, 8

    def batched():
        params = SamplingParams(temperature=0.8, seed=seed, stop_ids=())
        return [s for batch in engine.sample_batch(prompt, n, 128, params) for s in batch]

    def sequential():
        return [engine.generate_ids(prompt, 128, SamplingParams(temperature=0.8, seed=derive_seed(seed, i), stop_ids=()))
                for i in range(n)]

    t_batched, _ = best_of(batched, rounds)
    batched_rows = [row[len(prompt) :] for row in engine._rows]
    t_seq, seq_rows = best_of(sequential, 1)
    print(f"\n2. majority vote sampling, N = {n} x 128 tokens, temperature 0.8")
    print(f"   batched (1 prefill, batch of {n}): {t_batched:.3f} s;  {n} sequential: {t_seq:.3f} s")
    print(f"   samples identical to the sequential seeded ones: {batched_rows == seq_rows}")
    print(f"   batched / sequential wall time: {t_batched / t_seq:.2f}x (target <= 0.35x)")


def bench_window(model: GPT, prompt: list[int], context_length: int) -> None:
    """3. Long generation with a sliding window (a fresh engine: its cache has one row)."""
    engine = Engine(model, FakeTokenizer())
    total, window = 4096, 256
    stamps, mem = [], {}
    tokens = engine.stream_ids(prompt, total, SamplingParams(window=window, stop_ids=()))
    start = time.perf_counter()
    for i, _ in enumerate(tokens, 1):
        stamps.append(time.perf_counter())
        if i in (512, total):
            mem[i] = (engine.cache.nbytes() / 2**20, rss_mb())
    first = 512 / (stamps[511] - start)
    last = 512 / (stamps[-1] - stamps[-513])
    print(f"\n3. {total} new tokens, window {window} (context {context_length}), greedy")
    for i, (cache_mb, rss) in mem.items():
        print(f"   after {i:>4} tokens: KV cache {cache_mb:.2f} MiB, process RSS {rss:.0f} MiB")
    print(f"   window slides (re-encodes of the last {window // 2} tokens): {engine.last_stats.reencodes}")
    print(f"   tokens/s first 512: {first:.1f}, last 512: {last:.1f}, last/first = {last / first:.2f} "
          f"(target within 15%)")


def bench_beam(engine: Engine, prompt: list[int], rounds: int, width: int = 4, new: int = 128) -> None:
    """4. Beam search against B separate greedy decodes (the same number of tokens decoded)."""
    engine.beam_search(prompt, width, 4, stop_ids=())  # warm-up (allocates the B-row cache)
    t_beam, beam = best_of(lambda: engine.beam_search(prompt, width, new, stop_ids=()), rounds)
    t_greedy, _ = best_of(lambda: [engine.generate_ids(prompt, new, NO_STOP) for _ in range(width)], 1)
    greedy_tokens = width * new
    print(f"\n4. beam search, B = {width} x {new} tokens, no stopping (gpt2-mini, vocab {engine.vocab_size})")
    print(f"   beam search: {t_beam:.3f} s, {beam.tokens} tokens decoded, {beam.tokens / t_beam:8.1f} tokens/s")
    print(f"   {width} greedy decodes: {t_greedy:.3f} s, {greedy_tokens} tokens, {greedy_tokens / t_greedy:8.1f} tokens/s")
    print(f"   beam / separate greedy tokens/s: {(beam.tokens / t_beam) / (greedy_tokens / t_greedy):.2f}x")


def main(parts: set[int], rounds: int) -> None:
    torch.manual_seed(0)
    config = GPTConfig.preset("gpt2-mini")
    model = GPT(config)
    model.reset_parameters(torch.Generator().manual_seed(0))
    model.eval()
    engine = Engine(model, FakeTokenizer())
    g = torch.Generator().manual_seed(1)
    prompt = torch.randint(0, config.vocab_size, (32,), generator=g).tolist()
    print(f"gpt2-mini: {model.num_parameters() / 1e6:.1f}M parameters, fp32, {torch.get_num_threads()} threads, "
          f"load average {os.getloadavg()[0]:.1f}")
    if 2 in parts:
        bench_vote(engine, prompt, rounds)
    if 3 in parts:
        bench_window(model, prompt, config.context_length)
    if 4 in parts:
        bench_beam(engine, prompt, rounds)


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", default="2,3,4", help="which measurements to run, e.g. 2,3")
    parser.add_argument("--rounds", type=int, default=2, help="timed repeats of the batched runs (best kept)")
    args = parser.parse_args()
    main({int(p) for p in args.parts.split(",")}, args.rounds)
