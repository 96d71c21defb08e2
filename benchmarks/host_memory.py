"""CPU training with freed memory kept in the process (`llm_core.host_memory`) against glibc's defaults.

The setting is process-wide and cannot be undone, so each side runs in its own child process and the
rounds alternate the two (on, off, off, on, ...). A child times `--steps` steps after two warm-up steps
and reports wall time, CPU time (user + system: what the page faults cost even when other jobs share the
cores), minor page faults per step and peak RSS. The baseline is glibc as torch leaves it.

Workloads (`--work`):
- `gpt2-mini`: our step at batch 4 x 256 (`GPT.forward(ids, targets)`, fused AdamW), bf16 autocast where
  the CPU has bf16, and in fp32;
- `default`: the default experiment's Trainer (`Trainer(TrainConfig(reuse_freed_memory=...))`, what
  `workbench train` builds);
- `--thread` runs the steps in a worker thread, as the TUI does (the setting applied first, in the main
  thread, as `workbench` does before the TUI opens).

    python benchmarks/host_memory.py [--rounds 4] [--steps 6] [--work gpt2-mini,default] [--thread]
"""
from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import peers


def child(setting: str, work: str, bf16: bool, steps: int, in_thread: bool) -> dict:
    """Runs in the child process: apply (or not) the setting, build the workload, time `steps` steps."""
    from llm_core.host_memory import reuse_freed_memory

    if setting == "on":
        reuse_freed_memory()
    import torch

    from llm_core import GPT, GPTConfig
    from llm_core.training import TrainConfig, Trainer
    from llm_core.training.optim import build_optimizer

    trainer = None
    if work == "default":
        trainer = Trainer(TrainConfig(out=tempfile.mkdtemp(), name="host-memory", max_steps=10**6, eval_every=10**6,
                                      checkpoint_every=10**6, bf16=bf16, reuse_freed_memory=setting == "on"))
        step, tokens = trainer.train_step, trainer.config.batch_size * trainer.model.config.context_length
    else:
        model = GPT(GPTConfig.preset(work)).train()
        model.reset_parameters(torch.Generator().manual_seed(0))
        opt = build_optimizer(model, TrainConfig(peak_lr=1e-4, min_lr=1e-5, initial_lr=1e-5))
        seq = torch.randint(0, model.config.vocab_size, (4, model.config.context_length + 1),
                            generator=torch.Generator().manual_seed(1))
        x, y = seq[:, :-1], seq[:, 1:]
        tokens = x.numel()

        def step() -> None:
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                loss = model(x, y)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)

    out: dict = {}

    def timed() -> None:
        for _ in range(2):
            step()
        r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        for _ in range(steps):
            step()
        wall, r1 = time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_SELF)
        out.update(wall=wall / steps, cpu=(r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime) / steps,
                   faults=(r1.ru_minflt - r0.ru_minflt) / steps, rss_mib=r1.ru_maxrss / 1024, tokens=tokens)

    if in_thread:
        worker = threading.Thread(target=timed)
        worker.start()
        worker.join()
    else:
        timed()
    if trainer is not None:
        trainer.close()
    return out


def run_child(setting: str, work: str, bf16: bool, steps: int, in_thread: bool) -> dict:
    cmd = [sys.executable, __file__, "--child", setting, "--work", work, "--steps", str(steps),
           "--dtype", "bf16" if bf16 else "fp32"] + (["--thread"] if in_thread else [])
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"child {setting} {work} failed:\n{done.stderr}")
    return json.loads(done.stdout.splitlines()[-1])


def compare(work: str, bf16: bool, rounds: int, steps: int, in_thread: bool) -> None:
    where = "a worker thread" if in_thread else "the main thread"
    print(f"\n{work}, {'bf16 autocast' if bf16 else 'fp32'}, {steps} steps a round in {where}, {rounds} rounds")
    got: dict[str, list[dict]] = {"off": [], "on": []}
    for r in range(rounds):
        for setting in (("on", "off") if r % 2 == 0 else ("off", "on")):
            got[setting].append(run_child(setting, work, bf16, steps, in_thread))
        print(f"   round {r + 1}: " + "; ".join(
            f"{s} {got[s][-1]['wall'] * 1e3:.0f} ms ({got[s][-1]['faults']:,.0f} faults)" for s in ("off", "on"))
            + f"  ({peers.machine_line()})")
    for s, label in (("off", "glibc defaults"), ("on", "reuse_freed_memory")):
        runs = got[s]
        print(f"   {label:<20} {statistics.median(r['tokens'] / r['wall'] for r in runs):8,.0f} tokens/s, "
              f"{statistics.median(r['wall'] for r in runs) * 1e3:6.0f} ms a step, CPU "
              f"{statistics.median(r['cpu'] for r in runs) * 1e3:6.0f} ms, "
              f"{statistics.median(r['faults'] for r in runs):9,.0f} page faults a step, peak RSS "
              f"{max(r['rss_mib'] for r in runs):,.0f} MiB")
    for key in ("wall", "cpu"):
        ratio, per_round = peers.median_ratio([r[key] for r in got["off"]], [r[key] for r in got["on"]])
        print(f"   {key} time: {ratio:.2f}x median (rounds {', '.join(f'{x:.2f}' for x in per_round)})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--work", default="gpt2-mini,default")
    parser.add_argument("--thread", action="store_true", help="steps in a worker thread, as the TUI runs them")
    parser.add_argument("--child", choices=["on", "off"], help=argparse.SUPPRESS)
    parser.add_argument("--dtype", choices=["bf16", "fp32"], default="bf16", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.work, args.dtype == "bf16", args.steps, args.thread)))
        return
    import torch

    from llm_core.device import supports_bf16
    from llm_core.host_memory import is_glibc

    if not is_glibc():
        raise SystemExit("host_memory.py: the setting is glibc's, and this process does not run on glibc")
    print(peers.machine_line())
    has_bf16 = supports_bf16(torch.device("cpu"))
    for work in args.work.split(","):
        for bf16 in ([True, False] if work == "gpt2-mini" else [has_bf16]):
            if bf16 and not has_bf16:
                continue
            compare(work, bf16, args.rounds, args.steps, args.thread)


if __name__ == "__main__":
    main()
