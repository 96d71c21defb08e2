"""Distillation: a small student learns from a teacher, by its logits (`loss`)."""
from .loss import distillation_loss, distillation_terms

__all__ = ["distillation_loss", "distillation_terms"]
