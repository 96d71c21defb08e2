"""What the teacher top-k cache saves: logit distillation's step time with the teacher running in every step
vs reading its cached top-k logits, on the embedded experiment, in one process.

    python benchmarks/distill_cache.py --teacher runs/pretrain [--k 32] [--steps 20]

Prints the one-off cost of writing the cache (seconds, bytes, the teacher's mean probability mass outside
its top k), the measured seconds per step of both (best of `--rounds` interleaved rounds, each timing
`--steps` steps after the Trainer's own warm-up), their ratio, and the KD term of the first batch both
ways (the top-k renormalisation is an approximation: this shows by how much it moves the loss).
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from llm_core.distill.recipe import distill_config  # noqa: E402
from llm_core.training import Trainer  # noqa: E402


def seconds_per_step(trainer: Trainer, steps: int) -> float:
    return trainer.estimate(measure_steps=steps)["seconds_per_step"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher", required=True)
    parser.add_argument("--k", type=int, default=32)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    a = parser.parse_args()
    out = Path(tempfile.mkdtemp(prefix="distill-cache-"))
    try:
        live = Trainer(distill_config(a.teacher, name="live", out=str(out)))
        start = time.perf_counter()
        cached = Trainer(distill_config(a.teacher, name="cached", out=str(out), kd_cache=str(out / "cache"),
                                        kd_topk=a.k))
        built = time.perf_counter() - start
        m = cached.objective.cache_manifest
        print(f"cache written: {m['seconds']:.1f} s of teacher forwards ({built:.1f} s with the Trainer), "
              f"{m['bytes'] / 2**20:.1f} MiB for {sum(s['windows'] for s in m['splits'].values())} windows, k={a.k}, "
              f"teacher mass outside its top {a.k}: {m['tail_mass']:.2%}", flush=True)
        batch = next(iter(cached.batches))
        _, with_cache = cached.objective.loss(cached.model, batch)
        plain = {k: v for k, v in batch.items() if not k.startswith("teacher_")}
        live.model.load_state_dict(cached.model.state_dict())
        _, with_teacher = live.objective.loss(live.model, plain)
        print(f"first batch KD term: teacher {with_teacher['kd_loss']:.4f}, cached top-{a.k} "
              f"{with_cache['kd_loss']:.4f} ({with_cache['kd_loss'] / with_teacher['kd_loss'] - 1:+.2%})")
        times: dict[str, list[float]] = {"teacher": [], "cache": []}
        for _ in range(a.rounds):  # interleaved: a noisy machine slows both alike
            times["teacher"].append(seconds_per_step(live, a.steps))
            times["cache"].append(seconds_per_step(cached, a.steps))
        t, c = min(times["teacher"]), min(times["cache"])
        print(f"seconds per step: teacher in every step {t:.3f}, cached {c:.3f}: {t / c:.2f}x faster; "
              f"the cache pays for itself after {m['seconds'] / max(t - c, 1e-9):.0f} steps")
    finally:
        shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    from script_errors import run_script

    run_script(main)
