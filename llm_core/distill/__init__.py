"""Distillation: a small student learns from a teacher, by its logits (`loss`, `objective`: the distill
stage, Hinton et al. 2015 / MiniLLM) or by its verified worked solutions (`traces`: DeepSeek-R1 style SFT)."""
from .loss import distillation_loss, distillation_terms
from .objective import DistillationObjective, check_same_tokenizer, make_distill_objective, tokenizer_mismatch
from .traces import STATS_FILE, TRACES_FILE, TraceStats, generate_traces, trace_distillation, write_traces

__all__ = ["distillation_loss", "distillation_terms", "DistillationObjective", "check_same_tokenizer",
           "make_distill_objective", "tokenizer_mismatch", "STATS_FILE", "TRACES_FILE", "TraceStats",
           "generate_traces", "trace_distillation", "write_traces"]
