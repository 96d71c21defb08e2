"""Peak memory of the two DPO reference strategies: a frozen copy of the model vs adapters switched off.

    python benchmarks/dpo.py                        # gpt2-mini shape, LoRA rank 8, batch 2 pairs x 64 tokens
    python benchmarks/dpo.py --model gpt2-small --batch 2 --context 128 --steps 3

Three setups, each in its own subprocess (same seed, same random pairs, AdamW on the trainable parameters),
so each peak is that setup's alone:
- lora + adapters-off : LoRA policy; the reference is the same network under `adapters_disabled`
- lora + frozen-copy  : the same LoRA policy, but a deep-copied frozen reference (what you get without the
                        adapters trick) - the difference to the line above is one copy of the base weights
- full + frozen-copy  : full finetuning (the only option without adapters), for context
Reported: the unique parameter bytes held by policy + reference (exact), and the peak resident set size
(ru_maxrss on CPU, max_memory_allocated on CUDA) as growth over the process before the model was built.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

SETUPS = ("lora+adapters-off", "lora+frozen-copy", "full+frozen-copy")


def _peak_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def unique_parameter_bytes(*modules: torch.nn.Module | None) -> int:
    """Bytes of distinct parameter storages across modules (tied or shared weights count once)."""
    seen: set[int] = set()
    total = 0
    for module in modules:
        if module is None:
            continue
        for p in module.parameters():
            key = p.untyped_storage().data_ptr()
            if key not in seen:
                seen.add(key)
                total += p.untyped_storage().nbytes()
    return total


def run_one(setup: str, args: argparse.Namespace) -> dict:
    from llm_core.adapters import add_adapters
    from llm_core.dpo import DPOObjective, frozen_copy
    from llm_core.model import GPT, GPTConfig

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.set_num_threads(args.threads)
    before = _peak_mb(device)
    model = GPT(GPTConfig.preset(args.model, context_length=args.context))
    model.reset_parameters(torch.Generator().manual_seed(0))
    model.to(device)
    adapter, reference = setup.split("+")
    if adapter == "lora":
        add_adapters(model, kind="lora", rank=args.rank, alpha=2 * args.rank,
                     generator=torch.Generator().manual_seed(1))
    if reference == "frozen-copy":
        objective = DPOObjective(beta=0.1, reference="copy", reference_model=frozen_copy(model))
    else:
        objective = DPOObjective(beta=0.1, reference="adapters")
    weights = unique_parameter_bytes(model, objective.reference_model)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=1e-4)
    g = torch.Generator().manual_seed(2)
    B, L, V = args.batch, args.context, model.config.vocab_size
    prompt = L // 2
    batch = {}
    for side in ("chosen", "rejected"):
        ids = torch.randint(0, V, (B, L), generator=g)
        labels = torch.roll(ids, -1, dims=1)
        labels[:, :prompt] = -100  # prompt positions
        labels[:, -1] = -100  # nothing to predict after the last token
        batch[f"{side}_input_ids"], batch[f"{side}_labels"] = ids.to(device), labels.to(device)
    model.train()
    for _ in range(args.steps):
        optimizer.zero_grad(set_to_none=True)
        loss, _ = objective.loss(model, batch)
        loss.backward()
        optimizer.step()
    return {"setup": setup, "weights_mb": weights / 2**20, "peak_growth_mb": _peak_mb(device) - before,
            "trainable": sum(p.numel() for p in trainable), "loss": float(loss.detach())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="gpt2-mini")
    parser.add_argument("--batch", type=int, default=2, help="preference pairs per step (2x sequences)")
    parser.add_argument("--context", type=int, default=64)
    parser.add_argument("--rank", type=int, default=8)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--child", choices=SETUPS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_one(args.child, args)))
        return
    forwarded = [f"--{k}={v}" for k, v in vars(args).items() if k != "child"]
    rows = []
    for setup in SETUPS:
        cmd = [sys.executable, __file__, "--child", setup, *forwarded]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        rows.append(json.loads(out.strip().splitlines()[-1]))
    device = "cuda" if torch.cuda.is_available() else "cpu"
    print(f"DPO reference memory: {args.model}, LoRA rank {args.rank}, {args.batch} pairs x {args.context} "
          f"tokens, {args.steps} AdamW steps, {device}")
    print(f"{'setup':<20} {'trainable':>12} {'policy+reference weights':>25} {'peak memory growth':>20}")
    for r in rows:
        print(f"{r['setup']:<20} {r['trainable']:>12,} {r['weights_mb']:>22.1f} MB {r['peak_growth_mb']:>17.1f} MB")
    lean, copied = rows[0], rows[1]
    print(f"adapters-off keeps one copy of the base weights: {lean['weights_mb']:.1f} MB vs "
          f"{copied['weights_mb']:.1f} MB ({copied['weights_mb'] / lean['weights_mb']:.2f}x); peak "
          f"{lean['peak_growth_mb']:.1f} MB vs {copied['peak_growth_mb']:.1f} MB "
          f"({copied['peak_growth_mb'] - lean['peak_growth_mb']:+.1f} MB for the copy)")


if __name__ == "__main__":
    main()
