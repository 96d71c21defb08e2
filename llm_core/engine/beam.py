"""Beam search over the KV cache: one shared prefill, the surviving beams' cache rows reordered in place.

Beam search keeps the `width` most likely partial continuations (by summed log-probability) and extends
each by every token at each step, an approximation of the most likely continuation that greedy decoding
(width 1) misses when the best sequence starts with a less likely token. Finished hypotheses are ranked
with the GNMT length normalisation (Wu et al., 2016, "Google's Neural Machine Translation System",
arXiv:1609.08144, eq. 14): score(Y) = log P(Y) / lp(Y), lp(Y) = ((5 + |Y|) / 6) ** alpha; alpha = 0 ranks
by the summed log-probability, larger alpha favours longer hypotheses (a sum of negative terms otherwise
always prefers short ones).

Cost: the prompt is prefilled ONCE (batch 1) and copied into `width` cache rows; after each step the rows
of the surviving beams are gathered in place (`KVCache.reorder`), so a beam that splits in two is copied,
a dropped beam is overwritten, and nothing is re-prefilled. A step costs one forward of `width` rows x 1
token. The window rule is the Engine's (re-encode the last half when the window is full).

Stopping: a hypothesis ends on a stop id (default: the tokenizer's end-of-text; the stop id's
log-probability counts, the id itself is not in `.ids`) or when its text completes a stop condition
(default: the default experiment's answer line "The answer is N." or an Alpaca response stop; those
tokens stay in `.ids`). `stop_ids=()` disables both. The search ends when `width` hypotheses have finished
and no live beam can still beat the worst of them (exact: log-probabilities only fall, and lp grows at most
to lp(max_new_tokens)), when no beam is live, or after `max_new_tokens` tokens.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Sequence

import torch

from ..errors import GenerationError
from .params import SamplingParams

if TYPE_CHECKING:
    from .engine import Engine, GenerationStats

# The default experiment's answer line, complete with its full stop (so "The answer is 1" does not stop
# before "0."), or an Alpaca response boundary.
_ANSWER_LINE = re.compile(r"The answer is -?\d+\.")
_TEXT_STOPS = ("\n### ", "<|endoftext|>")
_TAIL = 32  # tokens decoded to look for a text stop (the answer line is well under this)

TextStop = Callable[[str], bool]


def answer_line_stop(text: str) -> bool:
    """True once `text` holds a complete answer line or an Alpaca response stop."""
    return _ANSWER_LINE.search(text) is not None or any(s in text for s in _TEXT_STOPS)


def length_penalty_factor(length: int, alpha: float) -> float:
    """GNMT's lp(Y) = ((5 + |Y|) / 6) ** alpha."""
    return ((5.0 + length) / 6.0) ** alpha


@dataclass
class Beam:
    ids: list[int]  # the continuation (a stop id that ended it is not included)
    logprob: float  # summed log-probability of the continuation (and of the stop id, if it stopped on one)
    score: float  # logprob / lp(|ids|): what beams are ranked by
    stopped: bool  # ended on a stop id or a text stop (False: ran to max_new_tokens)


@dataclass
class BeamResult:
    """The best beam (`.ids`, `.logprob`) and every final beam, best first."""

    beams: list[Beam] = field(default_factory=list)
    tokens: int = 0  # tokens decoded across all beams (the compute spent)

    @property
    def best(self) -> Beam:
        return self.beams[0]

    @property
    def ids(self) -> list[int]:
        return self.best.ids

    @property
    def logprob(self) -> float:
        return self.best.logprob

    @property
    def score(self) -> float:
        return self.best.score


def check_beam_args(width: int, max_new_tokens: int, length_penalty: float) -> None:
    for name, value in (("width", width), ("max_new_tokens", max_new_tokens)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise GenerationError(f"{name}: must be an integer >= 1, got {value!r}")
    if isinstance(length_penalty, bool) or not isinstance(length_penalty, (int, float)) or length_penalty < 0:
        raise GenerationError(f"length_penalty: must be a number >= 0, got {length_penalty!r}")


def beam_search(engine: "Engine", prompt_ids: Sequence[int], width: int, max_new_tokens: int,
                length_penalty: float = 0.0, stop_ids: Sequence[int] | None = None,
                text_stop: TextStop | None = answer_line_stop,
                params: SamplingParams = SamplingParams(truncate=True)) -> BeamResult:
    """Beam search of `width` beams (see the module docstring). `params` gives the window / truncation;
    `text_stop=None` stops on stop ids only."""
    from .engine import GenerationStats

    check_beam_args(width, max_new_tokens, length_penalty)
    ids, W = engine._check_ids(prompt_ids, params)
    if stop_ids is not None and (isinstance(stop_ids, (str, bytes)) or not all(
            isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in stop_ids)):
        raise GenerationError(f"stop_ids: must be a sequence of token ids, got {stop_ids!r}")
    stops = set(stop_ids) if stop_ids is not None else {engine.tokenizer.eot_id}
    if stop_ids is not None and not stop_ids:
        text_stop = None  # () disables every kind of stopping
    alpha = float(length_penalty)
    stats = GenerationStats(prompt_tokens=len(ids), stop_reason="length")
    engine.last_stats = stats
    logits = engine._prefill(ids, width, W, stats)[:1]  # (1, V): every row holds the prompt
    P = len(ids)
    live: list[list[int]] = [[]]  # continuations of the live beams; cache row i belongs to live[i]
    live_lp = torch.zeros(1, dtype=torch.float64)  # (k,) summed log-probabilities
    finished: list[Beam] = []
    keep = max(1, W // 2)
    bound_lp = length_penalty_factor(max_new_tokens, alpha)

    def finish(cont: list[int], lp: float, stopped: bool) -> None:
        finished.append(Beam(cont, lp, lp / length_penalty_factor(len(cont), alpha), stopped))
        finished.sort(key=lambda b: -b.score)
        del finished[width:]

    for step in range(max_new_tokens):
        logp = torch.log_softmax(logits.double(), dim=-1)  # (k, V)
        k, V = logp.shape
        cand = (live_lp[:, None] + logp).flatten()  # (k * V,)
        top_lp, top_idx = cand.topk(min(2 * width, k * V))  # 2 * width: `width` survive even if some stop
        src: list[int] = []
        new_live: list[list[int]] = []
        new_lp: list[float] = []
        last = step + 1 == max_new_tokens
        for rank, (lp, flat) in enumerate(zip(top_lp.tolist(), top_idx.tolist())):
            beam, tok = divmod(flat, V)
            if tok in stops:
                if rank < width:  # a stop outside the top `width` would not have survived as a beam
                    finish(live[beam], lp, True)
                continue
            cont = live[beam] + [tok]
            if text_stop is not None and text_stop(_tail_text(engine, cont)):
                if rank < width:
                    finish(cont, lp, True)
                continue
            if last:
                finish(cont, lp, False)
                if rank + 1 >= width:
                    break
                continue
            src.append(beam)
            new_live.append(cont)
            new_lp.append(lp)
            if len(new_live) == width:
                break
        stats.new_tokens += k
        if last or not new_live:
            break
        live, live_lp = new_live, torch.tensor(new_lp, dtype=torch.float64)
        # No live beam can still beat the worst of `width` finished ones: log P only falls, lp at most grows
        # to lp(max_new_tokens) (alpha >= 0), so live_lp / bound_lp bounds every future score.
        if len(finished) == width and float(live_lp.max()) / bound_lp <= finished[-1].score:
            break
        logits = _advance(engine, ids, live, src, P, W, keep, stats)
    if not finished:  # only when max_new_tokens ended the search with every candidate stopped out of rank
        finished = [Beam(c, float(lp), float(lp), False) for c, lp in zip(live, live_lp.tolist())]
    # The last live beams, for inspection: after a search that ran to max_new_tokens the cache rows hold
    # exactly these tokens. Rows and cache may disagree after an early end, so nothing reuses them.
    engine._rows = [ids + c for c in live]
    engine._valid = False
    stats.stop_reason = "eot" if finished[0].stopped else "length"
    return BeamResult(beams=list(finished), tokens=stats.new_tokens)


def _tail_text(engine: "Engine", cont: list[int]) -> str:
    return engine.tokenizer.decode_bytes(cont[-_TAIL:]).decode("utf-8", errors="replace")


def _advance(engine: "Engine", ids: list[int], live: list[list[int]], src: list[int], P: int, W: int,
             keep: int, stats: "GenerationStats") -> torch.Tensor:
    """Reorder the cache rows to the surviving beams and feed each its new token; logits (k, V)."""
    cache = engine.cache
    cache.reorder(src)
    t = P + len(live[0])  # tokens of every beam (they grow in lock step)
    if t - engine._start > W:
        # Window full: keep each beam's last `keep` tokens and re-encode them from position 0.
        engine._start = t - keep
        cache.reset()
        stats.reencodes += 1
        rows = [(ids + c)[engine._start:] for c in live]
        return engine._forward(torch.tensor(rows, device=engine.device))  # (k, V)
    return engine._forward(torch.tensor([[c[-1]] for c in live], device=engine.device))  # (k, V)
