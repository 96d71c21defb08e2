"""Decoding speed against the real peers, beside the memory-bandwidth bound (issue 15).

Sides (same weights, same dtype, one process, greedy, no early stop; `peers.py`):
- ours: `Engine(model, tokenizer)` as a user gets it (fast paths on; `--fast off` for the plain path);
  in fp32 also ours with `FastPaths(screen=False)`, the fp32 head on every step, to show what the bf16
  screen of the head (`llm_core.engine.screened_head`, greedy steps only) is worth, and ours with
  `llm_core.cpu_kernels` switched off (torch's attention and sampling) where they run;
- llms-from-scratch: its ch04 GPTModel with the reference notes' torch.cat KV cache and generation loop;
- transformers: `GPT2LMHeadModel.generate`.

Parts (`--parts`, default all but compile):
- `mini`:  gpt2-mini (width 384, 6 layers, vocab 50257), batch 1, 32 prompt + 128 new tokens, fp32;
- `bf16`:  the same in bf16 on every side (ours: `FastPaths(dtype="bf16")`, the peers `.to(bfloat16)`);
- `small`: gpt2-small (124M), 512 prompt + 128 new tokens, fp32;
- `small-bf16`: the same in bf16 on every side, where the CPU has bf16;
- `batch`: our batched sampling, N = 8 rows x 128 tokens at temperature 0.8 from one prefill, total
  tokens/s against batch 1 (fp32, and bf16 where the CPU has it);
- `compile`: the compiled one-token step (`FastPaths(compile="on")`): compile time and tokens/s.

Each part runs `--rounds` interleaved paired rounds after a warm-up and prints the median tokens/s of each
side, the median of the per-round ratios, and the fraction of the bound: copy bandwidth (measured here,
bytes read + written per second of a 512 MiB copy) / bytes of weights read per token.

    python benchmarks/decode_speed.py [--rounds 3] [--parts mini,bf16,small,small-bf16,batch] [--threads N]
"""
from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch

import peers
from llm_core import Engine, GPT, GPTConfig, cpu_kernels
from llm_core.device import supports_bf16
from llm_core.engine import SamplingParams
from llm_core.engine.fast import FastPaths

GREEDY = SamplingParams(stop_ids=())
UNSCREENED = "ours, screen off (fp32 head)"


class IdTokenizer:
    """The engine needs only eot_id here (ids in, ids out)."""

    eot_id = 50256
    n_vocab = 50257

    def decode_bytes(self, ids) -> bytes:
        return b""


def random_model(preset: str, seed: int = 0) -> GPT:
    model = GPT(GPTConfig.preset(preset))
    model.reset_parameters(torch.Generator().manual_seed(seed))
    return model.eval()


def prompt_of(n: int, seed: int = 1) -> list[int]:
    return torch.randint(0, 50257, (n,), generator=torch.Generator().manual_seed(seed)).tolist()


def report(title: str, new_tokens: int, times: dict[str, list[float]], bound: float | None = None,
           ours: str = "ours") -> None:
    if title:
        print(f"\n{title}")
    for name, ts in times.items():
        rate = new_tokens / statistics.median(ts)
        extra = f"  {rate / bound:5.1%} of the bound" if bound else ""
        print(f"   {name:<34}{rate:8.1f} tokens/s{extra}   (rounds: {', '.join(f'{new_tokens / t:.1f}' for t in ts)})")
    for name, ts in times.items():
        if name != ours:
            ratio, per_round = peers.median_ratio(ts, times[ours])
            print(f"   {ours} / {name}: {ratio:.2f}x median (rounds {', '.join(f'{r:.2f}' for r in per_round)})")


def bound_line(model: GPT, bandwidth: float, dtype_bytes: int) -> float:
    weights = peers.decode_weight_bytes(model) // next(model.parameters()).element_size() * dtype_bytes
    bound = bandwidth / weights
    print(f"   bound: {bandwidth / 1e9:.1f} GB/s copy bandwidth / {weights / 1e6:.1f} MB of weights per token "
          f"= {bound:.0f} tokens/s")
    return bound


KERNELS_OFF = "ours, cpu_kernels off"


def kernels_off(fn):
    """fn run with `llm_core.cpu_kernels` switched off (torch's ops for attention and sampling)."""
    def run():
        with cpu_kernels.switched(False):
            return fn()
    return run


def part_greedy(preset: str, prompt_len: int, new: int, dtype: torch.dtype, rounds: int, bandwidth: float,
                fast: bool, with_reference: bool = True) -> None:
    model = random_model(preset)
    prompt = prompt_of(prompt_len)
    peer_model = model if dtype == torch.float32 else copy.deepcopy(model).to(dtype)
    if not fast:
        engine = Engine(peer_model, IdTokenizer(), False)  # the plain path, on a model of that dtype
    else:  # as a user asks for it: the fp32 model, and bf16 decoding as a setting
        engine = Engine(model, IdTokenizer(), FastPaths(dtype="bf16" if dtype == torch.bfloat16 else None))
    sides = {"ours (Engine)": lambda: engine.generate_ids(prompt, new, GREEDY)}
    warm = {"ours (Engine)": lambda: engine.generate_ids(prompt, 4, GREEDY)}
    if fast and dtype == torch.float32:  # what the bf16 screen of the head is worth (`screened_head`)
        unscreened = Engine(model, IdTokenizer(), FastPaths(screen=False))
        sides[UNSCREENED] = lambda: unscreened.generate_ids(prompt, new, GREEDY)
        warm[UNSCREENED] = lambda: unscreened.generate_ids(prompt, 4, GREEDY)
    if fast and dtype == torch.float32 and cpu_kernels.enabled():  # what the decode kernels are worth
        sides[KERNELS_OFF] = kernels_off(lambda: engine.generate_ids(prompt, new, GREEDY))
        warm[KERNELS_OFF] = kernels_off(lambda: engine.generate_ids(prompt, 4, GREEDY))
    if with_reference:
        ref = peers.reference_model(peer_model, kv_cache=True)
        sides["llms-from-scratch (torch.cat cache)"] = lambda: peers.reference_generate(ref, prompt, new)
        warm["llms-from-scratch (torch.cat cache)"] = lambda: peers.reference_generate(ref, prompt, 4)
    hf = peers.hf_model(peer_model)
    sides["transformers (generate)"] = lambda: peers.hf_generate(hf, prompt, new)
    warm["transformers (generate)"] = lambda: peers.hf_generate(hf, prompt, 4)
    outputs = {name: fn() for name, fn in sides.items()}
    first = outputs["ours (Engine)"]
    same = {name: out == first for name, out in outputs.items() if name != "ours (Engine)"}
    for fn in warm.values():
        fn()
    times = {name: [] for name in sides}
    for _ in range(rounds):
        for name, fn in sides.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    dname = str(dtype).replace("torch.", "")
    title = f"{preset}, batch 1, {prompt_len} + {new} tokens, greedy, {dname}: {engine.decoder.describe()}"
    print(f"\n{title}")
    bound = bound_line(model, bandwidth, torch.tensor([], dtype=dtype).element_size())
    info = engine.decoder.describe()
    if info["screened_steps"]:  # the head read in bf16: fewer bytes a token than the fp32 bound counts
        head = model.lm_head.weight.numel()
        screened = peers.decode_weight_bytes(model) - head * 2  # fp32 blocks, bf16 head
        print(f"   the screen reads {screened / 1e6:.1f} MB a token (the head in bf16): bound "
              f"{bandwidth / screened:.0f} tokens/s; {info['screen_candidates'] / info['screened_steps']:.1f} "
              f"fp32 logits recomputed a step, {info['screen_fallbacks']} steps fell back to the fp32 head")
    print(f"   same greedy tokens as ours: {same}" + ("" if all(same.values()) else
          "  (bf16 rounding differs between implementations: the runs part at a near-tie)"))
    report("", new, times, bound, ours="ours (Engine)")
    if info["screened_steps"]:
        rate = new / statistics.median(times["ours (Engine)"])
        print(f"   ours (Engine): {rate / (bandwidth / screened):.1%} of the screened path's own bound")


def part_batch(rounds: int, new: int = 128, n: int = 8) -> None:
    model = random_model("gpt2-mini")
    prompt = prompt_of(32)
    modes = [("fp32", FastPaths())] + ([("bf16", FastPaths(dtype="bf16"))] if supports_bf16(torch.device("cpu")) else [])
    for name, paths in modes:
        engine = Engine(model, IdTokenizer(), paths)
        params = SamplingParams(temperature=0.8, seed=0, stop_ids=())
        one = lambda: engine.generate_ids(prompt, new, params)  # noqa: E731
        batch = lambda: [s for b in engine.sample_batch(prompt, n, new, params) for s in b]  # noqa: E731
        sides = {"batch 1": one, f"N = {n}": batch}
        if name == "fp32" and cpu_kernels.enabled():  # the same with torch's attention and sampling
            sides.update({f"batch 1, {KERNELS_OFF}": kernels_off(one), f"N = {n}, {KERNELS_OFF}": kernels_off(batch)})
        times = peers.paired_rounds(sides, rounds)
        print(f"\nbatched sampling, gpt2-mini, {name}, {n} rows x {new} tokens at temperature 0.8 from one prefill")
        for suffix in ("", f", {KERNELS_OFF}") if len(sides) > 2 else ("",):
            b1, bn = times[f"batch 1{suffix}"], times[f"N = {n}{suffix}"]
            ratio, per_round = peers.median_ratio([t * n for t in b1], bn)
            print(f"   batch 1{suffix}: {new / statistics.median(b1):.1f} tokens/s; N = {n}: "
                  f"{n * new / statistics.median(bn):.1f} tokens/s in total")
            print(f"   total tokens/s, N = {n} / batch 1: {ratio:.2f}x median (rounds "
                  f"{', '.join(f'{r:.2f}' for r in per_round)}; target >= 5x)")
        if len(sides) > 2:
            for key in ("batch 1", f"N = {n}"):
                ratio, _ = peers.median_ratio(times[f"{key}, {KERNELS_OFF}"], times[key])
                print(f"   {key}: kernels on / off {ratio:.2f}x")


def part_compile(rounds: int, new: int = 128) -> None:
    model = random_model("gpt2-mini")
    prompt = prompt_of(32)
    eager = Engine(model, IdTokenizer())
    compiled = Engine(model, IdTokenizer(), FastPaths(compile="on"))
    start = time.perf_counter()
    out = compiled.generate_ids(prompt, 4, GREEDY)
    first = time.perf_counter() - start
    print(f"\ncompiled one-token step (torch.compile, inductor), gpt2-mini fp32: first call {first:.1f} s "
          f"(compile {compiled.decoder.compile_seconds or 0:.1f} s); notices: {compiled.notices or 'none'}")
    print(f"   same tokens as eager: {out == eager.generate_ids(prompt, 4, GREEDY)}")
    times = peers.paired_rounds({"eager fast path": lambda: eager.generate_ids(prompt, new, GREEDY),
                                 "compiled": lambda: compiled.generate_ids(prompt, new, GREEDY)}, rounds)
    report(f"   eager vs compiled, 32 + {new} tokens", new, times, ours="compiled")
    saved = (statistics.median(times["eager fast path"]) - statistics.median(times["compiled"])) / new  # s/token
    if saved > 0:
        print(f"   the compile pays back after {first / saved:,.0f} tokens")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="interleaved timed rounds per part (default 3)")
    parser.add_argument("--parts", default="mini,bf16,small,small-bf16,batch",
                        help="mini,bf16,small,small-bf16,batch,compile")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads for every side")
    parser.add_argument("--fast", choices=("on", "off"), default="on", help="off: our plain path")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    parts = set(args.parts.split(","))
    unknown = parts - {"mini", "bf16", "small", "small-bf16", "batch", "compile"}
    if unknown:
        raise SystemExit(f"--parts: unknown part(s) {', '.join(sorted(unknown))}")
    torch.manual_seed(0)
    print(peers.machine_line())
    bandwidth = peers.copy_bandwidth()
    print(f"copy bandwidth: {bandwidth / 1e9:.1f} GB/s (bytes read + written per second, 512 MiB fp32 copy)")
    fast = args.fast == "on"
    if "mini" in parts:
        part_greedy("gpt2-mini", 32, 128, torch.float32, args.rounds, bandwidth, fast)
    bf16 = supports_bf16(torch.device("cpu"))
    for part, preset, prompt_len, dtype in (("bf16", "gpt2-mini", 32, torch.bfloat16),
                                            ("small", "gpt2-small", 512, torch.float32),
                                            ("small-bf16", "gpt2-small", 512, torch.bfloat16)):
        if part not in parts:
            continue
        if dtype == torch.bfloat16 and not bf16:
            print(f"\n{part}: this CPU has no bf16 arithmetic (skipped)")
            continue
        part_greedy(preset, prompt_len, 128, dtype, args.rounds, bandwidth, fast)
    if "batch" in parts:
        part_batch(args.rounds)
    if "compile" in parts:
        part_compile(args.rounds)
    print(f"\n{peers.machine_line()}")


if __name__ == "__main__":
    main()
