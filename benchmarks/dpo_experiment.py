"""The default experiment's DPO result: reward accuracy on held-out preference pairs and chain-of-thought
accuracy before and after DPO, from an instruction-finetuned (SFT) checkpoint.

    # the pipeline (each step writes a run folder under runs/):
    workbench train --set name=pretrain                                   # pretraining on llm_core/experiment/data/arith
    workbench train --set stage=sft --set init_from=runs/pretrain --set name=sft
    python benchmarks/dpo_experiment.py --sft runs/sft                   # DPO (beta 0.1) + evaluation
    python benchmarks/dpo_experiment.py --sft runs/sft --lora --beta 0.2 --steps 100
    python benchmarks/dpo_experiment.py --sft runs/sft --dpo runs/dpo-exp  # evaluate an existing DPO run

Reported on the held-out pairs (the run's validation split of llm_core/experiment/data/arith/preferences.json, never trained
on): the DPO reward accuracy (share of pairs whose implicit reward beta*log(pi/pi_ref) is higher for the
chosen response) and margin, plus the plain preference accuracy logp(chosen) > logp(rejected) of the SFT
and DPO models. Then greedy chain-of-thought accuracy on llm_core/experiment/data/arith/eval.json for both models (the same
measurement as the CoT row of `workbench eval --n 1`).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from llm_core.config import parse_overrides  # noqa: E402
from llm_core.data import evaluation_batches  # noqa: E402
from llm_core.dpo import DPOObjective, dpo_config, evaluate_dpo, sequence_logprobs  # noqa: E402
from llm_core.engine import RESPONSE_STOPS, Engine, SamplingParams  # noqa: E402
from llm_core.experiment import default_paths  # noqa: E402
from llm_core.training import TrainConfig, Trainer, load_checkpoint  # noqa: E402
from llm_core.training.builders import build_datasets  # noqa: E402


def train_dpo(args: argparse.Namespace) -> Path:
    overrides: dict[str, Any] = {"beta": args.beta, "out": args.out,
                                 "name": args.name or f"dpo-exp-{'lora-' if args.lora else ''}beta{args.beta:g}"}
    if args.steps is not None:
        overrides["max_steps"] = args.steps
    if args.sft_weight is not None:
        overrides["dpo_sft_weight"] = args.sft_weight  # the chosen responses' NLL term (0 = plain DPO)
    overrides.update(parse_overrides(TrainConfig, args.set))
    cfg = dpo_config(str(args.sft), data="arith", adapter="lora" if args.lora else "none", **overrides)
    trainer = Trainer(cfg)
    every = max(1, cfg.max_steps // 15)

    def show(event: dict[str, Any]) -> None:
        if event["type"] == "step" and (event["step"] % every == 0 or event["step"] == cfg.max_steps - 1):
            print(f"step {event['step']:4d} dpo loss {event['dpo_loss']:.4f} margin {event['reward_margin']:.3f} "
                  f"acc {event['reward_accuracy']:.0%} logp chosen {event['policy_chosen_logp']:.2f} "
                  f"rejected {event['policy_rejected_logp']:.2f}", flush=True)
        elif event["type"] == "eval":
            print(f"eval @ {event['step']}: val_reward_accuracy {event.get('val_reward_accuracy', 0):.1%} "
                  f"val_reward_margin {event.get('val_reward_margin', 0):.3f}", flush=True)
        elif event["type"] in ("alarm", "end"):
            print(f"{event['type']}: {event.get('kind', event.get('reason'))}: {event['message']}", flush=True)

    trainer.subscribe(show)
    trainer.run()
    if trainer.state == "failed":
        raise SystemExit(f"DPO run failed: {trainer.error}")
    return trainer.run_dir


@torch.no_grad()
def preference_accuracy(model: torch.nn.Module, objective: DPOObjective, batches: list[dict]) -> float:
    """Share of pairs with logp(chosen) > logp(rejected) under `model` (no reference involved)."""
    wins = total = 0
    for b in batches:
        ids = torch.cat([b["chosen_input_ids"], b["rejected_input_ids"]])
        labels = torch.cat([b["chosen_labels"], b["rejected_labels"]])
        logps = sequence_logprobs(model(ids), labels, objective.average_logps)  # (2B,)
        n = b["chosen_input_ids"].size(0)
        wins += int((logps[:n] > logps[n:]).sum())
        total += n
    return wins / total


def cot_accuracy(model: torch.nn.Module, tokenizer: Any, entries: list[dict], max_new_tokens: int) -> float:
    engine = Engine(model.eval(), tokenizer)
    correct = 0
    for e in entries:
        reply = engine.answer(e["question"], mode="cot", max_new_tokens=max_new_tokens,
                              params=SamplingParams(stop=RESPONSE_STOPS, truncate=True))
        correct += reply.answer == e["answer"]
    return correct / len(entries)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sft", type=Path, required=True, help="the instruction-finetuned checkpoint (run or step folder)")
    p.add_argument("--dpo", type=Path, help="an existing DPO run to evaluate (skips training)")
    p.add_argument("--beta", type=float, default=0.1)
    p.add_argument("--sft-weight", type=float, default=None,
                   help="weight of the chosen responses' NLL added to the DPO loss (default: the recipe's; 0 = plain DPO)")
    p.add_argument("--lora", action="store_true", help="train LoRA adapters (reference = adapters off)")
    p.add_argument("--steps", type=int, default=None, help="default: the DPO recipe's")
    p.add_argument("--out", default="runs")
    p.add_argument("--name", default="")
    p.add_argument("--set", action="append", default=[], help="extra TrainConfig key=value (repeatable)")
    p.add_argument("--limit", type=int, default=200, help="eval.json problems for CoT accuracy")
    p.add_argument("--max-new-tokens", type=int, default=256)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    dpo_dir = args.dpo or train_dpo(args)
    sft, dpo = load_checkpoint(args.sft, device="cpu"), load_checkpoint(dpo_dir, device="cpu")
    cfg = dpo.config  # the DPO run's config rebuilds exactly its held-out split
    _, val, collate = build_datasets(cfg, dpo.tokenizer, dpo.model.config.context_length)
    if val is None:
        raise SystemExit("the DPO run has no validation split (val_fraction=0)")
    batches = list(evaluation_batches(val, cfg.batch_size, collate, 10**6))
    objective = DPOObjective(beta=cfg.beta, reference="copy", reference_model=sft.model.eval())
    held_out = evaluate_dpo(objective, dpo.model, batches)
    pref_sft = preference_accuracy(sft.model, objective, batches)
    pref_dpo = preference_accuracy(dpo.model, objective, batches)
    entries = json.loads(default_paths()["eval"].read_text())[: args.limit]
    cot_sft = cot_accuracy(sft.model, sft.tokenizer, entries, args.max_new_tokens)
    cot_dpo = cot_accuracy(dpo.model, dpo.tokenizer, entries, args.max_new_tokens)

    print(f"\nDPO run {dpo_dir} (beta {cfg.beta:g}, adapter {cfg.adapter}, lr {cfg.peak_lr:g}, {dpo.step} steps) "
          f"from {args.sft}")
    print(f"held-out pairs: {len(val)}")
    print(f"  DPO reward accuracy          {held_out['val_reward_accuracy']:.1%}   (50% = chance)")
    print(f"  DPO reward margin            {held_out['val_reward_margin']:.3f}")
    print(f"  logp(chosen) > logp(rejected): SFT {pref_sft:.1%} -> DPO {pref_dpo:.1%}")
    print(f"chain-of-thought accuracy on {len(entries)} eval problems (greedy): SFT {cot_sft:.1%} -> DPO {cot_dpo:.1%}")


if __name__ == "__main__":
    from script_errors import run_script

    run_script(main)
