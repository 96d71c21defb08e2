"""`Conversation`: multi-turn chat over one checkpoint, headless (the TUI's chat pane, `workbench chat` and
the tests drive it). The chat modes and what each means (prompt cue, temperature) are defined only here.

Turns are Alpaca prompts chained by token ids: the next prompt is the previous conversation's exact tokens
(prompt, answer, end-of-text) followed by the new prompt, so the engine reuses its KV cache instead of
re-reading the history. Modes: greedy, sample (temperature / top-k / top-p), cot (the default experiment's
"Think step by step." cue; reasoning and final answer shown apart), vote (self-consistency over N sampled
chains of thought, Wang et al. 2022, with the tally and every sample kept), beam (beam search of `width`
beams over the chain of thought, `beam.py`, with every final beam kept), best (verifier-guided best-of-N:
N sampled chains of thought, each scored by `scorer`, the highest-scoring one kept, with every sample and
its score; `llm_core.search.select`).
The per-token view of an answer comes from one teacher-forced forward pass over the conversation: the
probability the model gives each answer token (temperature 1).
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from ..errors import GenerationError
from ..experiment import make_instruction
from ..formatting import format_prompt
from .beam import BeamResult
from .engine import RESPONSE_STOPS, Engine, eval_mode
from .params import SamplingParams
from .reasoning import VoteResult, split_answer
from .streaming import TextStream

# greedy: temperature 0; sample: the options' temperature / top-k / top-p; cot: greedy after the default
# experiment's chain-of-thought cue; vote: N sampled chains of thought, majority answer; beam: the most
# likely chain of thought among `width` beams; best: the highest-scoring of N sampled chains of thought.
MODES = ("greedy", "sample", "cot", "vote", "beam", "best")
REASONING_MODES = ("cot", "vote", "beam", "best")
SAMPLING_MODES = ("sample", "vote", "best")  # decode at the options' temperature  # prompted with the chain-of-thought cue, answer extracted


@dataclass
class ChatOptions:
    """How to answer one message (validated on construction)."""

    mode: str = "greedy"
    temperature: float = 0.8
    top_k: int | None = None
    top_p: float | None = None
    n: int = 8
    width: int = 4  # beams in the beam mode
    scorer: str = "verifier"  # the best mode's scorer: "verifier" or "model:PATH"
    max_new_tokens: int = 256
    seed: int = 0

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise GenerationError(f"mode: must be one of {', '.join(MODES)}, got {self.mode!r}")
        SamplingParams(temperature=self.temperature, top_k=self.top_k, top_p=self.top_p, seed=self.seed)
        if isinstance(self.n, bool) or not isinstance(self.n, int) or self.n < 1:
            raise GenerationError(f"n: must be an integer >= 1, got {self.n!r}")
        if isinstance(self.width, bool) or not isinstance(self.width, int) or self.width < 1:
            raise GenerationError(f"width: must be an integer >= 1, got {self.width!r}")
        if self.max_new_tokens < 1:
            raise GenerationError(f"max_new_tokens: must be >= 1, got {self.max_new_tokens!r}")
        if not isinstance(self.scorer, str) or not (self.scorer == "verifier" or self.scorer.startswith("model:")):
            raise GenerationError(f"scorer: must be 'verifier' or 'model:PATH', got {self.scorer!r}")

    @property
    def decoding_temperature(self) -> float:
        """The temperature the mode decodes at: sample, vote and best use the options', the others 0."""
        return self.temperature if self.mode in SAMPLING_MODES else 0.0

    def sampling(self, turn: int = 0) -> SamplingParams:
        """The engine's settings for the `turn`-th answer of a conversation (each turn its own seed); prompts
        that outgrow the context keep their last tokens."""
        return SamplingParams(temperature=self.decoding_temperature, top_k=self.top_k, top_p=self.top_p,
                              seed=self.seed + turn, truncate=True)


@dataclass
class Turn:
    user: str
    mode: str
    answer: str = ""
    reasoning: str = ""
    final: Any = None  # the extracted answer (cot / vote)
    vote: VoteResult | None = None
    beams: BeamResult | None = None
    scored: Any = None  # best mode: llm_core.search.ScoredSamples (every sample and its score)
    new_tokens: int = 0
    reused_tokens: int = 0
    screened_steps: int = 0  # steps whose head the bf16 screen answered (`screened_head`)
    screen_fp32_logits: int = 0  # fp32 logits computed in them
    seconds: float = 0.0
    cancelled: bool = False
    answer_ids: list[int] = field(default_factory=list)
    token_probs: list[tuple[str, float]] = field(default_factory=list)  # (token text, probability)

    @property
    def tokens_per_s(self) -> float:
        return self.new_tokens / self.seconds if self.seconds > 0 else 0.0

    def screen_note(self) -> str:
        """How the head was read, for the line under an answer ("" when the bf16 screen did not run)."""
        if not self.screened_steps:
            return ""
        return (f"head screened in bf16: {self.screen_fp32_logits / self.screened_steps:.1f} fp32 logits "
                f"a step")


class Conversation:
    """Multi-turn chat over one Engine. `leave_room=False` keeps the engine's own left truncation (the last
    context-length prompt tokens) instead of cutting the prompt so that the answer fits; `token_view=False`
    skips the per-token probabilities (one extra forward pass per answer)."""

    def __init__(self, engine: Engine, name: str = "", leave_room: bool = True, token_view: bool = True) -> None:
        self.engine = engine
        self.name = name
        self.leave_room = leave_room
        self.token_view = token_view
        self.turns: list[Turn] = []
        self._history: list[int] = []  # token ids of the finished turns (what the next prompt extends)
        self._histories: list[list[int]] = []  # history before each turn (for regenerate)

    # --- prompts --------------------------------------------------------------------------------------
    def prompt_text(self, user: str, mode: str) -> str:
        """The Alpaca prompt of one message: with the chain-of-thought cue in the cot and vote modes."""
        instruction = make_instruction(user, "cot") if mode in REASONING_MODES else user
        return format_prompt(instruction)

    def _prompt_ids(self, user: str, mode: str) -> list[int]:
        return self._history + self.engine.tokenizer.encode(self.prompt_text(user, mode))

    def _fit(self, ids: list[int], options: ChatOptions) -> list[int]:
        """Keep the conversation within the context, leaving room to answer (older turns drop first)."""
        if not self.leave_room:
            return ids
        room = max(self.engine.context_length - min(options.max_new_tokens, self.engine.context_length // 2), 1)
        return ids[-room:] if len(ids) > room else ids

    # --- answering ------------------------------------------------------------------------------------
    def reply(self, user: str, options: ChatOptions, cancel: threading.Event | None = None,
              on_text: Callable[[str], None] | None = None) -> Turn:
        """Answer `user`; stream text pieces to `on_text`; stop early when `cancel` is set."""
        if not isinstance(user, str) or not user.strip():
            raise GenerationError("message is empty")
        cancel = cancel or threading.Event()
        on_text = on_text or (lambda piece: None)
        turn = Turn(user=user, mode=options.mode)
        before = list(self._history)
        ids = self._fit(self._prompt_ids(user, options.mode), options)
        start = time.perf_counter()
        try:
            if options.mode == "vote":
                self._vote(turn, ids, options, on_text)
            elif options.mode == "beam":
                self._beam(turn, ids, options, on_text)
            elif options.mode == "best":
                self._best(turn, ids, options, on_text)
            else:
                self._stream(turn, ids, options, cancel, on_text)
        except BaseException:
            self._history = before  # a failed reply leaves the conversation as it was
            raise
        self._histories.append(before)
        turn.seconds = time.perf_counter() - start
        if options.mode in ("cot", "beam"):
            split = split_answer(turn.answer)
            turn.reasoning, turn.final = split.reasoning, split.answer
        self.turns.append(turn)
        if self.token_view:
            turn.token_probs = self.token_probabilities(ids, turn.answer_ids)
        return turn

    def _stream(self, turn: Turn, ids: list[int], o: ChatOptions, cancel: threading.Event,
                on_text: Callable[[str], None]) -> None:
        tokens = self.engine.stream_ids(ids, o.max_new_tokens, o.sampling(len(self.turns)))
        text = TextStream(tokens, self.engine.tokenizer.decode_bytes, RESPONSE_STOPS, cancel)
        pieces: list[str] = []
        for piece in text:
            pieces.append(piece)
            on_text(piece)
        stats = self.engine.last_stats
        turn.answer, turn.answer_ids, turn.cancelled = "".join(pieces), text.ids, text.cancelled
        turn.new_tokens, turn.reused_tokens = len(turn.answer_ids), stats.reused_tokens
        turn.screened_steps, turn.screen_fp32_logits = stats.screened_steps, stats.screen_fp32_logits
        if stats.stop_reason == "eot" and not text.stopped and not turn.cancelled:
            self._history = self.engine.conversation_ids  # exact tokens: the next turn reuses the cache
        else:
            self._history = ids + self.engine.tokenizer.encode(turn.answer) + [self.engine.tokenizer.eot_id]

    def _vote(self, turn: Turn, ids: list[int], o: ChatOptions, on_text: Callable[[str], None]) -> None:
        params = o.sampling(len(self.turns)).replace(stop=RESPONSE_STOPS)
        result = self.engine.majority_vote(ids, o.n, o.max_new_tokens, params)
        turn.vote, turn.final = result, result.answer
        winner = next((s for s in result.samples if result.answer is not None and s.answer == result.answer),
                      result.samples[0] if result.samples else None)
        turn.answer = winner.text if winner else ""
        turn.new_tokens = result.tokens
        turn.answer_ids = self.engine.tokenizer.encode(turn.answer)
        on_text(turn.answer)
        self._history = ids + turn.answer_ids + [self.engine.tokenizer.eot_id]

    def _beam(self, turn: Turn, ids: list[int], o: ChatOptions, on_text: Callable[[str], None]) -> None:
        result = self.engine.beam_search(ids, o.width, o.max_new_tokens)
        tok = self.engine.tokenizer
        text = tok.decode_bytes(result.ids).decode("utf-8", errors="replace")
        for stop in RESPONSE_STOPS:  # a beam that stopped on a response boundary keeps its tokens: cut there
            text = text.split(stop)[0]
        turn.beams, turn.answer, turn.new_tokens = result, text, result.tokens
        turn.answer_ids = tok.encode(text)
        on_text(text)
        self._history = ids + turn.answer_ids + [tok.eot_id]

    def _best(self, turn: Turn, ids: list[int], o: ChatOptions, on_text: Callable[[str], None]) -> None:
        from ..search.select import sample_and_score  # search builds on the engine, not the other way round

        params = o.sampling(len(self.turns)).replace(stop=RESPONSE_STOPS)
        scored = sample_and_score(self.engine, ids, turn.user, o.n, o.max_new_tokens, params, o.scorer)
        turn.scored, turn.final, turn.answer = scored, scored.best.answer, scored.best.text
        turn.reasoning = split_answer(turn.answer).reasoning
        turn.new_tokens = scored.tokens
        turn.answer_ids = self.engine.tokenizer.encode(turn.answer)
        on_text(turn.answer)
        self._history = ids + turn.answer_ids + [self.engine.tokenizer.eot_id]

    def regenerate(self, options: ChatOptions, cancel: threading.Event | None = None,
                   on_text: Callable[[str], None] | None = None) -> Turn:
        """Answer the last message again (a new seed for sampling modes), replacing the last answer."""
        if not self.turns:
            raise GenerationError("nothing to regenerate: the conversation is empty")
        last = self.turns.pop()
        self._history = self._histories.pop()
        options.seed += 1000
        return self.reply(last.user, options, cancel, on_text)

    def reset(self) -> None:
        self.turns.clear()
        self._history, self._histories = [], []
        self.engine.reset()

    # --- views ----------------------------------------------------------------------------------------
    @torch.no_grad()
    def token_probabilities(self, prompt_ids: list[int], answer_ids: list[int]) -> list[tuple[str, float]]:
        """Probability of each answer token given everything before it (one uncached forward pass)."""
        if not answer_ids:
            return []
        ctx = self.engine.context_length
        seq = (prompt_ids + answer_ids)[-ctx:]
        n = min(len(answer_ids), len(seq) - 1)
        model = self.engine.model
        with eval_mode(model):
            logits = model(torch.tensor([seq], device=self.engine.device))[0].float()  # (T, V)
        logp = torch.log_softmax(logits[-n - 1 : -1], dim=-1)  # position t predicts token t + 1
        targets = torch.tensor(seq[-n:], device=logp.device)
        probs = logp.gather(1, targets[:, None])[:, 0].exp().tolist()
        tok = self.engine.tokenizer
        return [(tok.decode_bytes([t]).decode("utf-8", "replace"), p) for t, p in zip(seq[-n:], probs)]

    def to_markdown(self) -> str:
        lines = [f"# Chat with {self.name or 'a checkpoint'}", ""]
        for turn in self.turns:
            lines += [f"**You** ({turn.mode}):", "", turn.user, "", "**Model:**", "", turn.answer or "(no answer)"]
            if turn.mode in REASONING_MODES:
                lines += ["", f"Final answer: {turn.final if turn.final is not None else '(none)'}"]
            if turn.scored is not None:
                scores = ", ".join(f"{s.answer}: {v:.2f}" for s, v in zip(turn.scored.samples, turn.scored.scores))
                lines += [f"Scored samples ({len(turn.scored.samples)}, answer: score): {scores}"]
            if turn.vote is not None:
                tally = ", ".join(f"{a}: {c}" for a, c in turn.vote.tally.items()) or "no answers"
                lines += [f"Votes ({len(turn.vote.samples)} samples): {tally}" + (" (tie)" if turn.vote.tie else "")]
            screen = f", {note}" if (note := turn.screen_note()) else ""
            lines += ["", f"_{turn.new_tokens} tokens, {turn.tokens_per_s:.1f} tokens/s, "
                          f"{turn.reused_tokens} cached tokens reused{screen}_", ""]
        return "\n".join(lines)
