"""`TrainConfig`: every knob of a training run, validated on construction.

One dataclass serves every stage of `stages.STAGES` (pretraining, instruction finetuning, DPO). Its
defaults ARE the recipe of the embedded default experiment (`data=arith`): the block marked "Default experiment recipe" is the one place
to change it. A run folder's `config.json` holds `to_dict(TrainConfig)` plus the resolved model shape
under `model_config`, so `TrainConfig.from_file(runs/<name>/config.json)` reproduces the run.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Literal

from ..config import from_dict, parse_overrides, to_dict
from ..errors import ConfigError
from ..io import read_json_object
from .loggers.registry import check_logger_names
from .stages import STAGES, stage_names

# The registered stage names (pretrain, sft, dpo): a Literal, so `--set stage=x` lists the choices.
Stage = Literal[tuple(STAGES)]  # type: ignore[valid-type]

# Key written next to the TrainConfig fields in a run's config.json (the resolved GPTConfig).
MODEL_CONFIG_KEY = "model_config"


@dataclass
class TrainConfig:
    # --- What to train on -------------------------------------------------------------------------
    stage: Stage = "pretrain"
    data: str = "arith"  # a path (txt/json/jsonl, or a comma-separated list of txt files) or "arith"
    val_data: str | None = None  # a separate validation file; else `val_fraction` of `data` is held out
    val_fraction: float = 0.05
    tokenizer: str = "auto"  # "auto" = the data's own tokenizer (arith) / the init checkpoint's, else "gpt2"
    stride: int = 0  # pretraining window stride; 0 = context_length (non-overlapping windows)
    separator: str | None = None  # pretraining: split text files into documents on this string (arith: auto)

    # --- Model ------------------------------------------------------------------------------------
    model: str = "tiny"  # a GPTConfig preset name
    d_model: int = 0  # 0 = the preset's value
    n_layers: int = 0
    n_heads: int = 0
    context_length: int = 0
    dropout: float = 0.0
    init_from: str | None = None  # a checkpoint (run dir or step dir) to start from, e.g. SFT after pretrain
    # A PEFT LoRA/DoRA adapter folder to continue training (its base is init_from; the folder's r, alpha and
    # targets replace lora_rank, lora_alpha and adapter_targets, `adapter` must name its kind).
    init_adapters: str | None = None

    # --- Default experiment recipe (tuned for `workbench train` on 2 CPU cores; change it HERE) ----
    # Measured on 2 shared cores (tiny preset, arith BPE vocab 512, the 1-3 operation data with paraphrase
    # set): 1800 steps of 16 x 256 tokens give 95% greedy chain-of-thought accuracy in distribution and
    # 78.5% on the paraphrase set; 1500 steps gave 89% / 54% (data without openers; README, "Default
    # experiment"). 1800 steps are 7.4M tokens: about 7 min at the 17,400 tokens/s of an otherwise idle
    # machine (10.4 min measured while other jobs shared the cores).
    max_steps: int = 1800
    batch_size: int = 16
    grad_accum: int = 1
    schedule: Literal["cosine", "linear", "constant"] = "cosine"
    initial_lr: float = 0.0
    peak_lr: float = 3e-3
    min_lr: float = 3e-4
    warmup_steps: int | None = None  # None or -1: use warmup_fraction * max_steps
    warmup_fraction: float = 0.034  # 61 of 1800 steps; a fraction so that a shorter --set max_steps still works
    weight_decay: float = 0.1
    decay_embeddings: bool = False
    beta1: float = 0.9
    beta2: float = 0.95
    max_norm: float | None = 1.0  # global-norm gradient clipping; None = off
    clip_during_warmup: bool = True
    # ------------------------------------------------------------------------------------------------

    # --- Safety -----------------------------------------------------------------------------------
    nonfinite: Literal["stop", "skip"] = "stop"
    max_nonfinite_in_a_row: int = 5

    # --- Monitoring and checkpoints ---------------------------------------------------------------
    eval_every: int = 200
    eval_batches: int = 8
    sample_prompt: str | None = None  # None = a stage-appropriate prompt from the validation data
    sample_tokens: int = 32
    log_every: int = 1
    checkpoint_every: int = 500
    keep_last: int = 2
    # Experiment trackers that also get metrics.jsonl's step and eval scalars (training/loggers): any of
    # csv, tensorboard, wandb; () = metrics.jsonl only. `--set loggers=csv,tensorboard`.
    loggers: tuple[str, ...] = ()

    # --- Execution --------------------------------------------------------------------------------
    seed: int = 1337
    device: str = "auto"
    bf16: bool = True
    num_threads: int | None = None

    # --- Parameter-efficient finetuning and Mixture-of-Experts ------------------------------------
    adapter: Literal["none", "lora", "dora"] = "none"
    lora_rank: int = 8
    lora_alpha: float = 16.0
    adapter_targets: str = "attn,mlp"  # groups (attn, mlp, head) or glob patterns on module names
    moe_experts: int = 0
    moe_top_k: int = 2
    moe_aux_weight: float = 0.01
    moe_z_weight: float = 0.0

    # --- DPO --------------------------------------------------------------------------------------
    beta: float = 0.1  # the one default of DPO's beta (the DPO recipe keeps it)
    dpo_reference: Literal["auto", "copy", "adapters"] = "auto"
    dpo_loss_type: Literal["sigmoid", "ipo"] = "sigmoid"
    dpo_label_smoothing: float = 0.0  # conservative DPO (Mitchell, 2023): assumed share of flipped labels
    dpo_average_logps: bool = False  # False = summed response log-probs (the paper's); True = per-token mean
    dpo_cache_reference: bool = False  # compute each pair's reference log-probs once and reuse them
    dpo_sft_weight: float = 0.0  # add this times the chosen responses' NLL (keeps chosen likelihood up)
    drop_identical_pairs: bool = False  # skip preference pairs whose chosen == rejected instead of refusing

    # --- RL (GRPO; llm_core.rl) ---------------------------------------------------------------------
    group_size: int = 8  # G completions sampled per prompt (the batch is batch_size prompts)
    reward: str = "accuracy,format"  # terms name[:weight], comma-separated: accuracy, format, model:PATH
    kl_beta: float = 0.0  # weight of the k3 KL to the starting model; 0 = no reference forward at all
    clip_eps: float = 0.2  # PPO clip range of the ratio pi / pi_old
    mu: int = 1  # optimizer steps per sampled batch (1: REINFORCE with the group baseline)
    advantage: Literal["std", "none", "rloo"] = "std"  # GRPO / Dr. GRPO / RLOO
    rl_aggregation: Literal["sequence", "token"] = "token"  # per-sequence mean (GRPO) or per token (DAPO)
    rl_prompt: Literal["as_is", "neutral", "cot"] = "neutral"  # the prompt: the bare problem, or + CoT cue
    rl_temperature: float = 1.0
    rl_top_p: float = 1.0
    rl_max_new_tokens: int = 192  # the default experiment's worked solutions are up to ~170 tokens
    rl_eval_problems: int = 32  # held-out prompts each eval answers greedily (neutral and CoT)

    # --- Distillation (llm_core.distill) -------------------------------------------------------------
    teacher: str | None = None  # the teacher checkpoint (run folder or step folder); stage distill needs it
    distill_mode: Literal["logits", "traces"] = "logits"  # match its logits / SFT on its verified traces
    kd_temperature: float = 2.0  # T: softens both distributions (Hinton et al. used 1..20)
    kd_alpha: float = 0.5  # weight of the T^2 * KL term; 1 - alpha weights the labels' cross-entropy
    kd_reverse: bool = False  # KL(student || teacher) instead (MiniLLM, Gu et al. 2024)
    trace_samples: int = 4  # traces mode: worked solutions the teacher samples per training problem
    trace_temperature: float = 0.8
    trace_problems: int = 0  # traces mode: the first N problems of the instruction file; 0 = all
    trace_max_new_tokens: int = 256  # the default experiment's worked solutions are up to ~170 tokens

    # --- Run folder -------------------------------------------------------------------------------
    name: str = ""  # "" = <stage>-<timestamp>
    out: str = "runs"

    def __post_init__(self) -> None:
        def fail(name: str, why: str) -> None:
            raise ConfigError(f"TrainConfig.{name}: {why}, got {getattr(self, name)!r}", field=name)

        for f in fields(self):  # inf / nan pass every range check written as a comparison: refuse them first
            value = getattr(self, f.name)
            if isinstance(value, float) and not math.isfinite(value):
                fail(f.name, "must be a finite number")
        if self.stage not in STAGES:
            fail("stage", f"must be {stage_names()}")
        if not self.data:
            fail("data", "must be a path or 'arith'")
        if self.separator == "":
            fail("separator", "must not be empty (use none for whole files)")
        if not 0.0 <= self.val_fraction < 1.0:
            fail("val_fraction", "must be in [0, 1)")
        for name in ("stride", "d_model", "n_layers", "n_heads", "context_length"):
            if getattr(self, name) < 0:
                fail(name, "must be >= 0 (0 = default)")
        if not 0.0 <= self.dropout < 1.0:
            fail("dropout", "must be in [0, 1)")
        for name in ("max_steps", "batch_size", "grad_accum", "eval_every", "eval_batches", "log_every",
                     "checkpoint_every", "keep_last", "max_nonfinite_in_a_row", "lora_rank"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                fail(name, "must be a positive integer")
        if isinstance(self.loggers, str) or not isinstance(self.loggers, (list, tuple)):
            fail("loggers", "must be a list of tracker names, e.g. ('csv', 'tensorboard')")
        try:
            self.loggers = check_logger_names(self.loggers)
        except ConfigError as exc:
            fail("loggers", str(exc))
        if self.sample_tokens < 0:
            fail("sample_tokens", "must be >= 0")
        if self.schedule not in ("cosine", "linear", "constant"):
            fail("schedule", "must be cosine, linear or constant")
        for name in ("initial_lr", "peak_lr", "min_lr", "weight_decay"):
            if not getattr(self, name) >= 0.0:
                fail(name, "must be >= 0")
        if self.peak_lr <= 0:
            fail("peak_lr", "must be > 0")
        if self.min_lr > self.peak_lr:
            fail("min_lr", f"must be <= peak_lr={self.peak_lr}")
        if self.warmup_steps == -1:
            self.warmup_steps = None
        if self.warmup_steps is not None and not 0 <= self.warmup_steps <= self.max_steps:
            fail("warmup_steps", f"must be in [0, max_steps={self.max_steps}] (or -1 for warmup_fraction)")
        if not 0.0 <= self.warmup_fraction < 1.0:
            fail("warmup_fraction", "must be in [0, 1)")
        for name in ("beta1", "beta2"):
            if not 0.0 <= getattr(self, name) < 1.0:
                fail(name, "must be in [0, 1)")
        if self.max_norm is not None and not self.max_norm > 0:
            fail("max_norm", "must be > 0 (or none to disable clipping)")
        if self.nonfinite not in ("stop", "skip"):
            fail("nonfinite", "must be stop or skip")
        if self.num_threads is not None and self.num_threads < 1:
            fail("num_threads", "must be >= 1")
        if self.adapter not in ("none", "lora", "dora"):
            fail("adapter", "must be none, lora or dora")
        if self.lora_alpha <= 0:
            fail("lora_alpha", "must be > 0")
        if self.moe_experts < 0 or self.moe_top_k < 1:
            fail("moe_experts", "moe_experts must be >= 0 and moe_top_k >= 1")
        if self.moe_aux_weight < 0 or self.moe_z_weight < 0:
            fail("moe_aux_weight", "MoE loss weights must be >= 0")
        if not self.beta > 0:
            fail("beta", "must be > 0")
        if self.dpo_reference not in ("auto", "copy", "adapters"):
            fail("dpo_reference", "must be auto, copy or adapters")
        if self.dpo_loss_type not in ("sigmoid", "ipo"):
            fail("dpo_loss_type", "must be sigmoid or ipo")
        if not 0.0 <= self.dpo_label_smoothing < 0.5:
            fail("dpo_label_smoothing", "must be in [0, 0.5)")
        if not self.dpo_sft_weight >= 0.0:
            fail("dpo_sft_weight", "must be >= 0")
        if self.init_adapters is not None and (self.adapter == "none" or not self.init_from):
            fail("init_adapters", "needs adapter=lora or dora (the folder's kind) and init_from (its base model)")
        if self.dpo_reference == "adapters" and self.adapter == "none":
            fail("dpo_reference", "'adapters' needs adapter=lora or dora")
        if self.group_size < 2:
            fail("group_size", "GRPO needs at least 2 completions per prompt")
        for name in ("mu", "rl_max_new_tokens", "rl_eval_problems"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                fail(name, "must be a positive integer")
        if not self.kl_beta >= 0:
            fail("kl_beta", "must be >= 0 (0 = no KL term)")
        if not 0 < self.clip_eps < 1:
            fail("clip_eps", "must be in (0, 1)")
        if not self.rl_temperature > 0:
            fail("rl_temperature", "must be > 0 (RL needs varied samples)")
        if not 0 < self.rl_top_p <= 1:
            fail("rl_top_p", "must be in (0, 1]")
        if self.stage == "rl":
            from ..rl.rewards import check_reward_spec

            try:
                check_reward_spec(self.reward)
            except ConfigError as exc:
                fail("reward", str(exc).removeprefix("reward: "))
        if self.stage == "distill" and not self.teacher:
            fail("teacher", "stage distill needs a teacher checkpoint (teacher=runs/NAME)")
        if self.distill_mode not in ("logits", "traces"):
            fail("distill_mode", "must be logits or traces")
        if not (isinstance(self.kd_temperature, (int, float)) and self.kd_temperature > 0):
            fail("kd_temperature", "must be > 0")
        if not 0.0 <= self.kd_alpha <= 1.0:
            fail("kd_alpha", "must be in [0, 1]")
        for name in ("trace_samples", "trace_max_new_tokens"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                fail(name, "must be a positive integer")
        if self.trace_problems < 0:
            fail("trace_problems", "must be >= 0 (0 = all)")
        if not self.trace_temperature > 0:
            fail("trace_temperature", "must be > 0 (rejection sampling needs varied samples)")
        if self.name and (Path(self.name).name != self.name or self.name.startswith(".")):
            fail("name", "must be a plain folder name")
        if not self.out:
            fail("out", "must be a folder")

    # --- Derived values ---------------------------------------------------------------------------
    @property
    def warmup(self) -> int:
        """Warmup length in optimizer steps (explicit `warmup_steps`, else a fraction of `max_steps`)."""
        if self.warmup_steps is not None:
            return self.warmup_steps
        return min(int(self.warmup_fraction * self.max_steps), self.max_steps - 1)

    # --- Construction helpers ---------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "TrainConfig") -> "TrainConfig":
        data = {k: v for k, v in data.items() if k != MODEL_CONFIG_KEY}
        return from_dict(cls, data, where=where)

    @classmethod
    def from_file(cls, path: str | Path) -> "TrainConfig":
        """A JSON config file (a run's config.json works too: its `model_config` is ignored)."""
        return cls.from_dict(read_json_object(path, ConfigError), where=str(path))

    def with_overrides(self, pairs: list[str] | None = None, **values: Any) -> "TrainConfig":
        """A validated copy with `key=value` strings (CLI --set) and/or keyword values applied."""
        changes = parse_overrides(TrainConfig, list(pairs or []))
        changes.update(values)
        return TrainConfig.from_dict({**to_dict(self), **changes})

    def to_dict(self) -> dict[str, Any]:
        return to_dict(self)
