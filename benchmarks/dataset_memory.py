"""Memory of a large instruction dataset: peak and retained bytes per byte of JSONL file.

    python benchmarks/dataset_memory.py              # a 50 MB JSONL file
    python benchmarks/dataset_memory.py --mb 10

The file is Alpaca records (the reference instruction file when ../shared/data is present, else the
embedded default experiment's), repeated with a counter until it reaches the size asked for. It is loaded
by `InstructionDataset` in a fresh process, which reports the growth of its peak resident memory
(ru_maxrss) and of its resident memory after the load, both measured from just before the load (torch,
the tokenizer and the interpreter excluded). The baseline is the layout we had before packing, one pair of
int64 tensors per example, built from the same token ids in the same process after the packed load.
Target: peak <= 4x the file size.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared"

from llm_core.experiment import DATA_DIR  # noqa: E402


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def write_jsonl(path: Path, megabytes: float) -> int:
    shared = SHARED / "data" / "instruction-data.json"
    source = shared if shared.exists() else DATA_DIR / "instructions.json"
    records = json.loads(source.read_text(encoding="utf-8"))
    target, size, i = int(megabytes * 1e6), 0, 0
    with path.open("w", encoding="utf-8") as f:
        while size < target:
            record = dict(records[i % len(records)])
            record["instruction"] = f"{record['instruction']} (#{i})"  # no two lines alike
            line = json.dumps(record) + "\n"
            f.write(line)
            size += len(line.encode("utf-8"))
            i += 1
    return size


def child(path: str, tokenizer_spec: str) -> None:

    from llm_core.data import InstructionDataset
    from llm_core.tokenizer import load_tokenizer

    tokenizer = load_tokenizer(tokenizer_spec)
    tokenizer.encode("warm up the encoder")
    rss0, peak0 = rss_bytes(), peak_bytes()
    dataset = InstructionDataset(path, tokenizer, max_length=1024)
    packed = {"examples": len(dataset), "tokens": dataset.num_tokens,
              "peak": max(peak_bytes() - peak0, 0), "retained": rss_bytes() - rss0}
    rss1 = rss_bytes()
    # The old layout: one (input_ids, labels) pair of int64 tensors per example.
    tensors = [dataset[i] for i in range(len(dataset))]
    packed["per_example_tensors"] = rss_bytes() - rss1
    del tensors
    print(json.dumps(packed))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=50.0, help="size of the JSONL file in MB")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    cache = SHARED / "tiktoken-cache"
    env = dict(os.environ)
    if cache.exists():
        env.setdefault("TIKTOKEN_CACHE_DIR", str(cache))
        spec = "gpt2"
    else:
        spec = str(DATA_DIR / "tokenizer")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "instructions.jsonl"
        size = write_jsonl(path, args.mb)
        out = subprocess.run([sys.executable, __file__, "--child", str(path), spec], env=env, check=True,
                             capture_output=True, text=True).stdout
    r = json.loads(out.strip().splitlines()[-1])
    mb = lambda n: f"{n / 1e6:,.0f} MB"  # noqa: E731
    print(f"file: {mb(size)} JSONL, {r['examples']:,} examples, {r['tokens']:,} tokens ({spec} tokenizer)")
    print(f"peak growth during load: {mb(r['peak'])} = {r['peak'] / size:.2f}x the file (target <= 4x)")
    print(f"retained after load:     {mb(r['retained'])} = {r['retained'] / size:.2f}x the file")
    print(f"baseline, one int64 tensor pair per example (the layout before packing): "
          f"{mb(r['per_example_tensors'])} = {r['per_example_tensors'] / size:.2f}x the file, "
          f"{r['per_example_tensors'] / max(r['retained'], 1):.1f}x what the packed dataset retains")


if __name__ == "__main__":
    main()
