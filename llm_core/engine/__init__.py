"""Inference: KV cache, sampling, streaming, the `Engine`, chain of thought, majority vote, multi-turn chat."""
from .engine import EVAL_GREEDY, RESPONSE_STOPS, Engine, GenerationStats
from .fast import FastPaths
from .beam import Beam, BeamResult
from .conversation import MODES, REASONING_MODES, ChatOptions, Conversation, Turn
from .kv_cache import KVCache
from .params import SamplingParams
from .reasoning import ReasonedAnswer, Sample, VoteResult, decided, run_vote, split_answer
from .sampling import derive_seed, filter_top_k, filter_top_p, next_token_probs, sample_next
from .streaming import StopStringFilter, TextDecoder, TextStream, Utf8Stream

__all__ = [
    "MODES",
    "REASONING_MODES",
    "Beam",
    "BeamResult",
    "ChatOptions",
    "Conversation",
    "Turn",
    "EVAL_GREEDY",
    "Engine",
    "FastPaths",
    "GenerationStats",
    "KVCache",
    "RESPONSE_STOPS",
    "ReasonedAnswer",
    "Sample",
    "SamplingParams",
    "StopStringFilter",
    "TextDecoder",
    "TextStream",
    "Utf8Stream",
    "VoteResult",
    "decided",
    "derive_seed",
    "filter_top_k",
    "filter_top_p",
    "next_token_probs",
    "run_vote",
    "sample_next",
    "split_answer",
]
