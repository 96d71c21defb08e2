"""`TrainConfig`: every knob of a training run, validated on construction.

One dataclass serves every stage of `stages.STAGES` (pretraining, instruction finetuning, DPO). Its
defaults ARE the recipe of the embedded default experiment (`data=arith`): the block marked "Default experiment recipe" is the one place
to change it. A run folder's `config.json` holds `to_dict(TrainConfig)` plus the resolved model shape
under `model_config`, so `TrainConfig.from_file(runs/<name>/config.json)` reproduces the run (`from_file`
reads YAML too). Every field carries a one-line help in its metadata (`llm_core.config.setting`).
"""
from __future__ import annotations

import functools
import math
import typing
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Literal

from ..config import from_dict, parse_overrides, setting, to_dict
from ..errors import ConfigError
from ..config_files import read_config_file
from .loggers.registry import check_logger_names
from .stages import STAGES, stage_names

# The registered stage names (pretrain, sft, dpo): a Literal, so `--set stage=x` lists the choices.
Stage = Literal[tuple(STAGES)]  # type: ignore[valid-type]


@functools.cache
def _literal_fields() -> dict[str, tuple[Any, ...]]:
    """TrainConfig's fields typed as a Literal, with their allowed values (`stage` is checked against the
    registry instead, which may grow after import)."""
    hints = typing.get_type_hints(TrainConfig)
    return {f.name: typing.get_args(hints[f.name]) for f in fields(TrainConfig)
            if typing.get_origin(hints[f.name]) is Literal and f.name != "stage"}


# Key written next to the TrainConfig fields in a run's config.json (the resolved GPTConfig).
MODEL_CONFIG_KEY = "model_config"


@dataclass
class TrainConfig:
    """Every knob of a training run. Each field's one-line help is in its metadata (`setting`):
    `workbench config` lists them all with their types and defaults."""

    # --- What to train on -------------------------------------------------------------------------
    stage: Stage = setting("pretrain", "the training stage: its objective, dataset kind and recipe")
    data: str = setting("arith", "training data: a .txt/.json/.jsonl path, comma-separated .txt files, or arith "
                                 "(the default experiment's file for the stage)")
    val_data: str | None = setting(None, "a separate validation file; none = hold out val_fraction of data")
    val_fraction: float = setting(0.05, "share of data held out for validation when val_data is none")
    tokenizer: str = setting("auto", "gpt2, a tokenizer folder, or auto (the data's own for arith, the "
                                     "init checkpoint's, else gpt2)")
    stride: int = setting(0, "pretraining window stride in tokens; 0 = context_length (no overlap)")
    separator: str | None = setting(None, "pretraining: split text files into documents on this string "
                                          "(arith: <|endoftext|>); none = whole files")

    # --- Model ------------------------------------------------------------------------------------
    model: str = setting("tiny", "a GPTConfig preset name (tiny, tiny-student, gpt2-mini, gpt2-small, ...)")
    d_model: int = setting(0, "model width; 0 = the preset's")
    n_layers: int = setting(0, "transformer blocks; 0 = the preset's")
    n_heads: int = setting(0, "attention heads; 0 = the preset's")
    context_length: int = setting(0, "context length in tokens; 0 = the preset's")
    dropout: float = setting(0.0, "dropout probability in [0, 1)")
    init_from: str | None = setting(None, "a checkpoint (run folder or step folder) to start from, e.g. SFT "
                                          "after pretraining; none = fresh weights")
    init_adapters: str | None = setting(None, "a PEFT LoRA/DoRA adapter folder to continue training (its base is "
                                              "init_from; its r, alpha and targets replace lora_rank, lora_alpha "
                                              "and adapter_targets; adapter must name its kind)")

    # --- Default experiment recipe (tuned for `workbench train` on 2 CPU cores; change it HERE) ----
    # Measured on 2 cores (tiny preset, arith BPE vocab 512, 50,000 pretraining problems from the wide
    # phrasebook): 1800 steps of 16 x 256 tokens give 96.5% greedy chain-of-thought accuracy in distribution
    # and 94.5% on the paraphrase set (README, "Questions written in ways training never used"). 1800 steps
    # are 7.4M tokens: 6 min 48 s of wall time at about 20,100 tokens/s on an AVX512-BF16 CPU with the
    # machine to itself, evaluations included.
    max_steps: int = setting(1800, "optimizer steps of the run")
    batch_size: int = setting(16, "sequences (DPO: pairs, RL: prompts) per micro-batch")
    grad_accum: int = setting(1, "micro-batches accumulated per optimizer step")
    schedule: Literal["cosine", "linear", "constant"] = setting("cosine", "learning-rate decay after warmup")
    initial_lr: float = setting(0.0, "learning rate at step 0 (warmup starts here)")
    peak_lr: float = setting(3e-3, "learning rate at the end of warmup")
    min_lr: float = setting(3e-4, "learning rate at the last step (cosine / linear end point)")
    # A fraction by default, so that a shorter --set max_steps still warms up (61 of the 1800 steps).
    warmup_steps: int | None = setting(None, "warmup length in steps; none or -1 = warmup_fraction * max_steps")
    warmup_fraction: float = setting(0.034, "warmup length as a share of max_steps (when warmup_steps is none)")
    weight_decay: float = setting(0.1, "AdamW weight decay (matrices only)")
    decay_embeddings: bool = setting(False, "apply weight decay to the embeddings too")
    beta1: float = setting(0.9, "AdamW beta1")
    beta2: float = setting(0.95, "AdamW beta2")
    max_norm: float | None = setting(1.0, "global gradient-norm clipping threshold; none = no clipping")
    clip_during_warmup: bool = setting(True, "clip gradients during warmup too")
    # ------------------------------------------------------------------------------------------------

    # --- Safety -----------------------------------------------------------------------------------
    nonfinite: Literal["stop", "skip"] = setting("stop", "on a NaN/inf loss: stop the run, or skip the step")
    max_nonfinite_in_a_row: int = setting(5, "with nonfinite=skip: stop after this many bad steps in a row")

    # --- Monitoring and checkpoints ---------------------------------------------------------------
    eval_every: int = setting(200, "steps between evaluations (validation loss, sample, stage metrics)")
    eval_batches: int = setting(8, "validation batches per evaluation")
    sample_prompt: str | None = setting(None, "prompt of the sample at each eval; none = one from the "
                                              "validation data, fit for the stage")
    sample_tokens: int = setting(32, "tokens generated for the sample at each eval (0 = no sample)")
    log_every: int = setting(1, "steps between step events in metrics.jsonl")
    checkpoint_every: int = setting(500, "steps between checkpoints (the last step always writes one)")
    keep_last: int = setting(2, "checkpoints kept besides the best one")
    loggers: tuple[str, ...] = setting((), "experiment trackers that also get the step and eval scalars: any of "
                                           "csv, tensorboard, wandb; none = metrics.jsonl only")

    # --- Execution --------------------------------------------------------------------------------
    seed: int = setting(1337, "random seed (weights, data order, sampling)")
    device: str = setting("auto", "auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N or mps")
    bf16: bool = setting(True, "bf16 autocast where the hardware computes bf16")
    num_threads: int | None = setting(None, "torch CPU threads; none = torch's default")
    reuse_freed_memory: bool = setting(True, "on the CPU, keep freed memory in the process for the next step "
                                             "(glibc malloc settings, process-wide; llm_core.host_memory)")
    cpu_kernels: bool = setting(True, "on the CPU, kernels of our own: bf16 cross-entropy and GELU, fp32 decode "
                                      "attention and sampling; built on first use (process-wide; llm_core.cpu_kernels)")

    # --- Parameter-efficient finetuning and Mixture-of-Experts ------------------------------------
    adapter: Literal["none", "lora", "dora"] = setting("none", "train LoRA or DoRA adapters instead of all "
                                                               "weights")
    lora_rank: int = setting(8, "adapter rank r")
    lora_alpha: float = setting(16.0, "adapter scale numerator (the update is scaled by alpha / rank)")
    adapter_targets: str = setting("attn,mlp", "where adapters go: groups (attn, mlp, head) or glob patterns "
                                               "on module names, comma-separated")
    moe_experts: int = setting(0, "Mixture-of-Experts: experts per MoE layer; 0 = dense MLPs")
    moe_top_k: int = setting(2, "experts each token is routed to")
    moe_aux_weight: float = setting(0.01, "weight of the Switch load-balancing loss")
    moe_z_weight: float = setting(0.0, "weight of the router z-loss")

    # --- DPO --------------------------------------------------------------------------------------
    beta: float = setting(0.1, "DPO temperature; higher = stay closer to the reference")  # the DPO recipe keeps it
    dpo_reference: Literal["auto", "copy", "adapters"] = setting(
        "auto", "reference model: a frozen copy, or the network with adapters off; auto = adapters if any")
    dpo_loss_type: Literal["sigmoid", "ipo"] = setting("sigmoid", "sigmoid (DPO) or ipo (Azar et al. 2023)")
    dpo_label_smoothing: float = setting(0.0, "conservative DPO (Mitchell 2023): assumed share of flipped "
                                              "labels, in [0, 0.5)")
    dpo_average_logps: bool = setting(False, "per-token mean response log-probs instead of their sum (the "
                                             "paper's)")
    dpo_cache_reference: bool = setting(False, "compute each pair's reference log-probs once and reuse them")
    dpo_sft_weight: float = setting(0.0, "add this times the chosen responses' NLL (keeps them likely)")
    drop_identical_pairs: bool = setting(False, "skip preference pairs whose chosen == rejected instead of "
                                                "refusing the file")

    # --- RL (GRPO; llm_core.rl) ---------------------------------------------------------------------
    group_size: int = setting(8, "G: completions sampled per prompt (the batch is batch_size prompts)")
    reward: str = setting("accuracy,format", "reward terms name[:weight], comma-separated: accuracy, format, "
                                             "model:PATH")
    kl_beta: float = setting(0.0, "weight of the k3 KL to the starting model; 0 = no reference forward")
    clip_eps: float = setting(0.2, "PPO clip range of the ratio pi / pi_old")
    mu: int = setting(1, "optimizer steps per sampled batch (1 = REINFORCE with the group baseline)")
    advantage: Literal["std", "none", "rloo"] = setting("std", "advantages: std (GRPO), none (Dr. GRPO), rloo "
                                                               "(leave-one-out)")
    rl_aggregation: Literal["sequence", "token"] = setting("token", "loss averaged per sequence (GRPO) or per "
                                                                    "token (DAPO)")
    rl_prompt: Literal["as_is", "neutral", "cot", "mixed"] = setting(
        "neutral", "prompts: as written, the bare problem (neutral), with the CoT cue, or mixed (the two in turn)")
    rl_temperature: float = setting(1.0, "sampling temperature of the rollouts")
    rl_top_p: float = setting(1.0, "nucleus sampling mass of the rollouts, in (0, 1]")
    # The default experiment's worked solutions are up to ~170 tokens.
    rl_max_new_tokens: int = setting(192, "token budget per rollout")
    rl_eval_problems: int = setting(32, "held-out prompts each eval answers greedily (neutral and CoT)")

    # --- Distillation (llm_core.distill) -------------------------------------------------------------
    teacher: str | None = setting(None, "the teacher checkpoint (run or step folder); stage distill needs it")
    distill_mode: Literal["logits", "traces"] = setting("logits", "match the teacher's logits, or SFT on its "
                                                                  "verified traces")
    kd_temperature: float = setting(2.0, "T: softens both distributions (Hinton et al. used 1..20)")
    kd_alpha: float = setting(0.5, "weight of the T^2 * KL term; 1 - alpha weights the labels' cross-entropy")
    kd_reverse: bool = setting(False, "KL(student || teacher) instead (MiniLLM, Gu et al. 2024)")
    kd_cache: str | None = setting(None, "logits mode on text: a folder for the teacher's top-k logits, written "
                                         "once, read by later runs (no teacher forward)")
    kd_topk: int = setting(32, "kd_cache: teacher logits kept per position (renormalised over them)")
    trace_samples: int = setting(4, "traces mode: worked solutions the teacher samples per training problem")
    trace_temperature: float = setting(0.8, "traces mode: the teacher's sampling temperature")
    trace_problems: int = setting(0, "traces mode: the first N problems of the instruction file; 0 = all")
    # The default experiment's worked solutions are up to ~170 tokens.
    trace_max_new_tokens: int = setting(256, "traces mode: token budget per trace")

    # --- Run folder -------------------------------------------------------------------------------
    name: str = setting("", "run folder name; empty = <stage>-<timestamp>")
    out: str = setting("runs", "folder holding the run folders")

    def __post_init__(self) -> None:
        def fail(name: str, why: str) -> None:
            raise ConfigError(f"TrainConfig.{name}: {why}, got {getattr(self, name)!r}", field=name)

        for f in fields(self):  # inf / nan pass every range check written as a comparison: refuse them first
            value = getattr(self, f.name)
            if isinstance(value, float) and not math.isfinite(value):
                fail(f.name, "must be a finite number")
        if self.stage not in STAGES:
            fail("stage", f"must be {stage_names()}")
        # Every Literal field (schedule, nonfinite, adapter, dpo_*, advantage, rl_*, distill_mode, ...): from
        # Python too, not only from files and --set, which check types on their own.
        for name, choices in _literal_fields().items():
            if getattr(self, name) not in choices:
                fail(name, f"must be one of {', '.join(map(str, choices))}")
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
        if self.num_threads is not None and self.num_threads < 1:
            fail("num_threads", "must be >= 1")
        if self.lora_alpha <= 0:
            fail("lora_alpha", "must be > 0")
        if self.moe_experts < 0 or self.moe_top_k < 1:
            fail("moe_experts", "moe_experts must be >= 0 and moe_top_k >= 1")
        if self.moe_aux_weight < 0 or self.moe_z_weight < 0:
            fail("moe_aux_weight", "MoE loss weights must be >= 0")
        if not self.beta > 0:
            fail("beta", "must be > 0")
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
        if not (isinstance(self.kd_temperature, (int, float)) and self.kd_temperature > 0):
            fail("kd_temperature", "must be > 0")
        if not 0.0 <= self.kd_alpha <= 1.0:
            fail("kd_alpha", "must be in [0, 1]")
        if isinstance(self.kd_topk, bool) or not isinstance(self.kd_topk, int) or self.kd_topk < 1:
            fail("kd_topk", "must be an integer >= 1")
        if self.kd_cache is not None and self.stage == "distill":
            if self.distill_mode != "logits":
                fail("kd_cache", "caches the teacher's logits: only for distill_mode=logits")
            if self.kd_reverse:
                fail("kd_cache", "the reverse KL needs the teacher's full distribution; drop kd_cache or kd_reverse")
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
        """A JSON or YAML config file (`llm_core.config_files`; a run's config.json works too: its
        `model_config` is ignored). Unknown keys and wrong types are one-line ConfigErrors naming the file."""
        return cls.from_dict(read_config_file(path, ConfigError, expected="a mapping of TrainConfig keys"),
                             where=str(path))

    def with_overrides(self, pairs: list[str] | None = None, **values: Any) -> "TrainConfig":
        """A validated copy with `key=value` strings (CLI --set) and/or keyword values applied."""
        changes = parse_overrides(TrainConfig, list(pairs or []))
        changes.update(values)
        return TrainConfig.from_dict({**to_dict(self), **changes})

    def to_dict(self) -> dict[str, Any]:
        return to_dict(self)
