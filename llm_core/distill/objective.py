"""The distillation stage's objective: a student trained on a frozen teacher's next-token distributions.

Logit distillation (Hinton, Vinyals and Dean, 2015, arXiv:1503.02531; reverse KL as in MiniLLM, Gu et al.,
2024, arXiv:2306.08543): in every step the teacher runs on the same batch, frozen, in eval mode and under
`no_grad`, and the student minimises `alpha * T^2 * KL + (1 - alpha) * CE` (`loss.distillation_terms`)
on the positions the data trains: every token of text windows, the response tokens of instruction data.

Trace distillation (DeepSeek-AI, 2025, "DeepSeek-R1", arXiv:2501.12948, section 2.4: small models SFT'd
on the large model's verified reasoning) writes its training file first (`traces.py`); its training run
is plain cross-entropy on those traces, i.e. the SFT stage's objective, so `distill_mode=traces` needs
no teacher forward at all (the teacher is still checked for the shared tokenizer).

Student and teacher must share the tokenizer AND the vocabulary: the KL compares the two distributions
id by id, so the same id must mean the same token. Anything else is refused in one line naming both.
Nothing here is random and the teacher never changes, so exact resume needs only the tunables (the
default `state_dict`).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn as nn

from ..errors import ConfigError
from ..tokenizer import Tokenizer
from ..training.objectives import Objective, add_auxiliary_loss, unwrap
from .loss import distillation_terms, topk_distillation_terms
from .topk_cache import (CachedTeacherSplit, cache_matches, collate_with_teacher, expected_manifest,
                         write_topk_cache)


def tokenizer_mismatch(student: Tokenizer, teacher: Tokenizer) -> str | None:
    """Why the two tokenizers differ (vocabulary size, control tokens, the first id whose bytes differ),
    or None when every id means the same bytes in both (what the KL needs; the split rules may differ)."""
    if student.n_vocab != teacher.n_vocab:
        return f"{student.n_vocab} vs {teacher.n_vocab} tokens"
    if student.special_tokens != teacher.special_tokens:
        return f"control tokens {student.special_tokens} vs {teacher.special_tokens}"
    for i in range(student.n_vocab):
        a, b = student.token_bytes(i), teacher.token_bytes(i)
        if a != b:
            return f"token {i} is {a!r} vs {b!r}"
    return None


def check_same_tokenizer(student: Tokenizer, teacher: Tokenizer, student_source: str, teacher_source: str) -> None:
    """Refuse (one-line ConfigError naming both) unless `student` and `teacher` map every id to the same token."""
    why = tokenizer_mismatch(student, teacher)
    if why is not None:
        raise ConfigError(
            f"distill: the student's tokenizer {student.name!r} ({student_source}) and the teacher's "
            f"{teacher.name!r} ({teacher_source}) differ ({why}); train the student with the teacher's "
            f"tokenizer (tokenizer={teacher_source})", field="tokenizer")


def student_tokenizer_source(config: Any) -> str:
    """Where a run's tokenizer comes from, in words (for the mismatch message)."""
    if config.tokenizer != "auto":
        return str(config.tokenizer)
    if config.init_from:
        return f"the tokenizer of {config.init_from}"
    if config.data == "arith":
        from ..experiment import default_paths

        return str(default_paths()["tokenizer"])
    return "gpt2"


@dataclass(frozen=True)
class TeacherCacheSpec:
    """Where the teacher's top-k cache lives and which teacher it is of (`topk_cache.py`)."""

    folder: str
    teacher: str  # the teacher's step folder
    teacher_sha256: str  # of its weights file
    k: int
    vocab_size: int
    load_teacher: Callable[[], nn.Module]  # only called when the cache has to be written


class DistillationObjective(Objective):
    """`loss(model, batch)` on LM batches ({"input_ids", "labels"}: text windows or instruction examples).

    Step metrics: kd_loss (T^2 * KL on the kept positions; 0.0 without a teacher, in traces mode), ce_loss
    (cross-entropy with the labels on the same positions), kd_temperature (live-tunable); MoE students add
    aux_loss and expert_load. The loss is alpha * kd_loss + (1 - alpha) * ce_loss (+ aux_loss).
    """

    TUNABLES = ("kd_temperature",)

    def __init__(self, teacher: nn.Module | None, teacher_tokenizer: Tokenizer, teacher_source: str,
                 kd_temperature: float = 2.0, kd_alpha: float = 0.5, kd_reverse: bool = False,
                 student_source: str = "the run's tokenizer", cache: TeacherCacheSpec | None = None) -> None:
        if not 0.0 <= kd_alpha <= 1.0:
            raise ConfigError(f"kd_alpha: must be in [0, 1], got {kd_alpha!r}", field="kd_alpha")
        self.teacher = teacher
        if teacher is not None:
            # Frozen and deterministic: eval mode (no dropout) and no parameter ever asks for a gradient.
            teacher.eval()
            teacher.requires_grad_(False)
        self.teacher_tokenizer, self.teacher_source = teacher_tokenizer, teacher_source
        self.student_source = student_source
        self.kd_temperature = self.check_tunable("kd_temperature", kd_temperature)
        self.kd_alpha, self.kd_reverse = float(kd_alpha), bool(kd_reverse)
        self.cache = cache
        self.cache_manifest: dict[str, Any] | None = None  # the cache in use (read or just written)

    # --- hooks ---------------------------------------------------------------------------------------
    def prepare_data(self, train: Any, val: Any, collate: Callable, device: Any) -> tuple[Any, Any, Callable]:
        """With a cache folder: read the teacher's top-k from it, writing it first (the teacher runs once over
        every window) when the folder has none; the items then carry it and the teacher is never loaded."""
        if self.cache is None:
            return train, val, collate
        splits = {"train": train, **({"val": val} if val is not None else {})}
        spec = self.cache
        expected = expected_manifest({"path": spec.teacher, "sha256": spec.teacher_sha256}, spec.k,
                                     spec.vocab_size, splits)
        self.cache_manifest = cache_matches(spec.folder, expected)
        if self.cache_manifest is None:
            teacher = spec.load_teacher().to(device)
            self.cache_manifest = write_topk_cache(spec.folder, teacher, splits, spec.k, expected)
            del teacher  # the run never needs it again
        wrapped = {name: CachedTeacherSplit(d, spec.folder, name) for name, d in splits.items()}
        return wrapped["train"], wrapped.get("val"), collate_with_teacher(collate)

    def attach(self, trainer: Any) -> None:
        """Refuse a tokenizer the teacher does not share; put the teacher where the student trains."""
        if trainer.tokenizer is not None:
            check_same_tokenizer(trainer.tokenizer, self.teacher_tokenizer, self.student_source, self.teacher_source)
        if self.teacher is None:
            return
        self.teacher.to(trainer.device)
        student_context = unwrap(trainer.model).config.context_length
        if self.teacher.config.context_length < student_context:
            raise ConfigError(f"context_length: the student's windows ({student_context} tokens) are longer than "
                              f"the teacher's context ({self.teacher.config.context_length}, {self.teacher_source})",
                              field="context_length")

    # --- the loss ------------------------------------------------------------------------------------
    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, Any]]:
        input_ids, labels = batch["input_ids"], batch["labels"]  # (B, T) each
        if "teacher_ids" in batch:  # the teacher's top-k, read from the cache (topk_cache.py)
            student_logits = model(input_ids)  # (B, T, V)
            kd, ce = topk_distillation_terms(student_logits, batch["teacher_ids"], batch["teacher_logits"], labels,
                                             self.kd_temperature)
            loss = self.kd_alpha * kd + (1 - self.kd_alpha) * ce
        elif self.teacher is None:  # traces mode: plain next-token loss through the fused head (no logits)
            ce = model(input_ids, labels)
            kd = torch.zeros((), device=ce.device)
            loss = ce
        else:
            # The teacher first: the student's forward must be the last one, so an MoE student keeps its own
            # routing statistics for the auxiliary loss (as DPO runs its reference first).
            with torch.no_grad():
                teacher_logits = self.teacher(input_ids)  # (B, T, V)
            student_logits = model(input_ids)  # (B, T, V): the KD term needs the whole distribution
            if teacher_logits.size(-1) != student_logits.size(-1):
                raise ConfigError(f"distill: the student's vocabulary ({student_logits.size(-1)}) and the teacher's "
                                  f"({teacher_logits.size(-1)}, {self.teacher_source}) differ", field="teacher")
            kd, ce = distillation_terms(student_logits, teacher_logits, labels, self.kd_temperature,
                                        self.kd_reverse)
            loss = self.kd_alpha * kd + (1 - self.kd_alpha) * ce
        loss, metrics = add_auxiliary_loss(model, loss, {})
        metrics["kd_loss"] = float(kd.detach())
        metrics["ce_loss"] = float(ce.detach())
        return loss, metrics


def frozen_teacher(teacher: nn.Module, student_vocab: int, source: str) -> nn.Module:
    """A loaded teacher as distillation uses it: adapters merged (one plain network, no adapter overhead),
    the student's vocabulary checked, eval mode, no gradients."""
    if getattr(teacher, "adapter_config", None) is not None:
        from ..adapters import merge_adapters

        teacher = merge_adapters(teacher)
    if teacher.config.vocab_size != student_vocab:
        raise ConfigError(f"distill: the student's vocabulary ({student_vocab}) and the teacher's "
                          f"({teacher.config.vocab_size}, {source}) differ", field="teacher")
    return teacher.eval().requires_grad_(False)


def make_distill_objective(config: Any, model: nn.Module) -> DistillationObjective:
    """The objective of the distill stage (registered in `llm_core.training.stages.STAGES`): loads
    `config.teacher` (frozen) in logits mode; in traces mode only its tokenizer, for the check."""
    from ..training.loading import TOKENIZER_DIR, load_checkpoint, resolve_step_dir, run_dir_of
    from ..tokenizer import load_tokenizer

    if not config.teacher:
        raise ConfigError("TrainConfig.teacher: stage distill needs a teacher checkpoint", field="teacher")
    if config.distill_mode == "logits" and config.kd_cache:
        # The teacher is known by its weights' hash (from its manifest); it is loaded only to write the cache.
        from ..training.checkpoint import MODEL_FILE, read_manifest

        step_dir = resolve_step_dir(config.teacher)
        manifest = read_manifest(step_dir, verify=False)  # the cache records the weights' hash it was made from
        student_vocab = unwrap(model).config.vocab_size
        if config.kd_topk > student_vocab:
            raise ConfigError(f"kd_topk: {config.kd_topk} is more than the vocabulary ({student_vocab})",
                              field="kd_topk")

        def load_teacher() -> nn.Module:
            return frozen_teacher(load_checkpoint(step_dir).model, student_vocab, config.teacher)

        source = str(run_dir_of(step_dir) / TOKENIZER_DIR)
        spec = TeacherCacheSpec(config.kd_cache, str(step_dir), manifest["files"][MODEL_FILE]["sha256"],
                                config.kd_topk, student_vocab, load_teacher)
        return DistillationObjective(None, load_tokenizer(Path(source)), source, kd_temperature=config.kd_temperature,
                                     kd_alpha=config.kd_alpha, kd_reverse=config.kd_reverse,
                                     student_source=student_tokenizer_source(config), cache=spec)
    if config.distill_mode == "logits":
        loaded = load_checkpoint(config.teacher)
        teacher = frozen_teacher(loaded.model, unwrap(model).config.vocab_size, config.teacher)
        tokenizer = loaded.tokenizer
        source = str(run_dir_of(loaded.path) / TOKENIZER_DIR)
    else:
        teacher = None
        source = str(run_dir_of(resolve_step_dir(config.teacher)) / TOKENIZER_DIR)
        tokenizer = load_tokenizer(Path(source))
    return DistillationObjective(teacher, tokenizer, source, kd_temperature=config.kd_temperature,
                                 kd_alpha=config.kd_alpha, kd_reverse=config.kd_reverse,
                                 student_source=student_tokenizer_source(config))
