"""Inference-time scaling by search: beam search (in the Engine), best-of-N and weighted votes with a
pluggable scorer, and the accuracy-compute frontier of the default experiment."""
from ..engine.beam import Beam, BeamResult, length_penalty_factor
from .frontier import (BEAM_WIDTHS, TEMPERATURES, VOTE_SIZES, FrontierRow, best_temperature, frontier,
                       rows_to_dicts)
from .select import (SCORERS, ScoredSamples, best_index, best_of_n, resolve_scorer, sample_and_score,
                     verifier_score, weighted_vote)

__all__ = ["BEAM_WIDTHS", "TEMPERATURES", "VOTE_SIZES", "FrontierRow", "best_temperature", "frontier",
           "rows_to_dicts", "SCORERS", "Beam", "BeamResult", "ScoredSamples", "best_index", "best_of_n", "length_penalty_factor",
           "resolve_scorer", "sample_and_score", "verifier_score", "weighted_vote"]
