"""The accuracy-compute frontier (`llm_core.search.frontier`) of one checkpoint on a subset of the held-out
problems, printed as the `workbench eval --search` table and plot and saved as JSON where you say (so a
read-only checkpoint can be measured: nothing is written next to it).

Run: .venv/bin/python benchmarks/search_frontier.py runs/pretrain --limit 50 --out /tmp/frontier.json
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch

from llm_core.engine import Engine
from llm_core.experiment import default_paths
from llm_core.search import best_temperature, frontier, rows_to_dicts
from llm_core.search.frontier import FrontierRow
from llm_core.training import load_checkpoint
from workbench.commands.eval_search import search_lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--limit", type=int, default=50)
    parser.add_argument("--data", type=Path, default=None)
    parser.add_argument("--temperatures", default="0.3,0.5,0.8,1.0")
    parser.add_argument("--n", default="1,4,8,16")
    parser.add_argument("--widths", default="2,4,8")
    parser.add_argument("--max-new-tokens", type=int, default=256)
    parser.add_argument("--scorer", default="verifier", help="comma separated: verifier, model:PATH")
    parser.add_argument("--out", type=Path, required=True)
    a = parser.parse_args()
    entries = json.loads((a.data or default_paths()["eval"]).read_text())[: a.limit]
    loaded = load_checkpoint(a.checkpoint)
    engine = Engine(loaded.model, loaded.tokenizer)
    print(f"{loaded.path} (step {loaded.step}), {len(entries)} problems, {torch.get_num_threads()} threads, "
          f"load average {os.getloadavg()[0]:.1f}", flush=True)
    start = time.perf_counter()
    rows = frontier(engine, entries, [float(t) for t in a.temperatures.split(",")], [int(n) for n in a.n.split(",")],
                    [int(w) for w in a.widths.split(",") if w], a.max_new_tokens, scorer=a.scorer.split(","),
                    progress=lambda done, total: print(f"  {done}/{total} {time.perf_counter() - start:.0f} s",
                                                       flush=True))
    dicts = rows_to_dicts(rows)
    print("\n".join(search_lines(dicts)))
    best = best_temperature(rows)
    cot = next(r.accuracy for r in rows if r.method == "cot")
    top: FrontierRow = max(rows, key=lambda r: r.accuracy)
    print(f"best vote temperature at N={max(r.n for r in rows if r.method == 'vote')}: {best}; greedy CoT {cot:.1%}; "
          f"best method {top.label} N={top.n}: {top.accuracy:.1%}; total {time.perf_counter() - start:.0f} s, "
          f"load average {os.getloadavg()[0]:.1f}")
    a.out.write_text(json.dumps({"checkpoint": str(loaded.path), "step": loaded.step, "problems": len(entries),
                                 "rows": dicts, "best_temperature": best}, indent=1))


if __name__ == "__main__":
    from script_errors import run_script

    run_script(main)
