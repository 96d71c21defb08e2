"""The inference engine: prefill once, decode one token per step from a KV cache, stream, sample in batches.

`Engine(model, tokenizer)` knows only token ids and the tokenizer (`encode`, `decode_bytes`, `eot_id`):
prompt formats live in `llm_core.formatting` / `llm_core.experiment`.

Context and window (documented behaviour; the tests compare against exactly this uncached reference):
  Let W = `window` or the model's context length. Before predicting each token the model sees the last
  tokens seq[s:t] of the conversation, with position ids 0..t-s-1, where
  - the prompt starts the context at s = max(0, P - W) (P = prompt length): a prompt longer than W keeps
    its last W tokens, which is allowed only with `truncate=True` or an explicit `window`; otherwise it is
    a GenerationError naming both lengths;
  - during generation, when t - s would exceed W, the context restarts at s = t - max(1, W // 2): the
    kept half is re-encoded from position 0 in one pass (see `kv_cache`), so memory stays at W positions,
    learned positions stay below the context length, and generation can run past the context forever.
  Cached decoding is exact with respect to this definition (greedy tokens equal the uncached reference).

Multi-turn: the engine remembers the tokens of the last single-row call (prompt + generated). When the next
prompt extends them, only the new tokens are prefilled and `last_stats.reused_tokens` says how many cached
positions were reused. `reset()` starts a new conversation. Validation happens before any state changes,
so a refused call leaves the cache as it was.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Sequence

import torch

from ..errors import GenerationError
from .kv_cache import KVCache
from .reasoning import Extractor, ReasonedAnswer, VoteResult, experiment_prompt, run_vote, split_answer
from .sampling import derive_seed, sample_next, seeded_generators, validate_sampling
from .streaming import StopStringFilter, Utf8Stream

# Where an Alpaca-format response ends when a small model runs on (see llm_core.formatting.split_response).
RESPONSE_STOPS = ("\n### ", "<|endoftext|>")


@dataclass
class GenerationStats:
    """What the last call did (for the CLI / TUI to report)."""

    prompt_tokens: int = 0
    reused_tokens: int = 0  # cached positions reused from the previous turn (0 = fresh prefill)
    prefilled_tokens: int = 0  # prompt tokens run through the model
    truncated_tokens: int = 0  # prompt tokens dropped on the left to fit the window
    new_tokens: int = 0  # tokens sampled (all rows)
    reencodes: int = 0  # window slides (re-encoding of the kept half)
    stop_reason: str = ""  # "eot" (a stop id), "stop" (a stop string), "length"

    @property
    def reused(self) -> bool:
        return self.reused_tokens > 0


def _fresh_seed() -> int:
    return int(torch.randint(0, 2**62, (1,)).item())  # an unseeded call draws from torch's global RNG


class Engine:
    """Generation on top of a GPT and a tokenizer. See the module docstring for the window rule."""

    def __init__(self, model: torch.nn.Module, tokenizer: Any) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.context_length: int = model.config.context_length
        self.vocab_size: int = model.config.vocab_size
        self.device = next(model.parameters()).device
        self.cache: KVCache | None = None
        self.last_stats = GenerationStats()
        self.reset()

    # --- conversation state ------------------------------------------------------------------------
    def reset(self) -> None:
        """Start a new conversation: the next call prefills from scratch (buffers stay allocated)."""
        self._rows: list[list[int]] = []  # tokens of each row (prompt + sampled); row 0 = the conversation
        self._start = 0  # the cache holds rows[r][_start : _start + cache.length]
        self._window = 0
        self._valid = False
        if self.cache is not None:
            self.cache.reset()

    # --- validation (no state changes) ---------------------------------------------------------------
    def _check_ids(self, ids: Sequence[int], window: int | None, truncate: bool) -> tuple[list[int], int]:
        if isinstance(ids, torch.Tensor):
            ids = ids.flatten().tolist()
        ids = list(ids)
        if not ids:
            raise GenerationError("prompt is empty (0 tokens)")
        for i in ids:
            if not isinstance(i, int) or isinstance(i, bool) or not 0 <= i < self.vocab_size:
                raise GenerationError(f"prompt token {i!r} is not an id in [0, {self.vocab_size})")
        if window is not None and (
            not isinstance(window, int) or isinstance(window, bool) or not 1 <= window <= self.context_length
        ):
            raise GenerationError(f"window: must be an integer in [1, {self.context_length}], got {window!r}")
        W = window or self.context_length
        if len(ids) > W and window is None and not truncate:
            raise GenerationError(
                f"prompt is {len(ids)} tokens, longer than the context length {self.context_length} "
                "(opt into left truncation or a window)"
            )
        return ids, W

    def _encode(self, prompt: str) -> list[int]:
        if not isinstance(prompt, str):
            raise GenerationError(f"prompt: must be a string, got {type(prompt).__name__}")
        if not prompt:
            raise GenerationError("prompt is empty")
        return self.tokenizer.encode(prompt)

    @staticmethod
    def _check_count(name: str, value: Any, minimum: int) -> int:
        if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
            raise GenerationError(f"{name}: must be an integer >= {minimum}, got {value!r}")
        return value

    # --- the model and the cache ---------------------------------------------------------------------
    def _forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Run new tokens (B, T) through the model on top of the cache; return last-position logits (B, V)."""
        T = tokens.shape[1]
        assert self.cache is not None
        positions = torch.arange(self.cache.length, self.cache.length + T, device=self.device)
        self._valid = False  # an interrupted forward leaves half-written layers: start over next time
        was_training = self.model.training  # e.g. sampling mid-training: no dropout, then restore the mode
        self.model.eval()
        try:
            with torch.inference_mode():
                logits = self.model(tokens, positions=positions, cache=self.cache)[:, -1]  # (B, V)
        finally:
            self.model.train(was_training)
        self.cache.advance(T)
        self._valid = True
        return logits

    def _prefill(self, ids: list[int], rows: int, W: int, stats: GenerationStats) -> torch.Tensor:
        """Make the cache hold the prompt (reusing the previous turn when it is a prefix); logits (rows, V)."""
        if self.cache is None or not self.cache.matches(self.model, rows, W):
            self.cache = KVCache.for_model(self.model, rows, W)
            self._valid = False
        cache = self.cache
        P = len(ids)
        prev = self._rows[0] if self._valid and len(self._rows) == 1 and self._window == W else None
        reuse = prev is not None and len(prev) <= P and ids[: len(prev)] == prev and cache.length > 0
        if reuse:
            fed = self._start + cache.length
            if fed == P:  # nothing new: re-run the last token to get its logits (overwrites in place)
                cache.truncate(cache.length - 1)
                fed -= 1
            if P - self._start > W:  # the extension overflows the window: restart it from the prompt's end
                reuse = False
            else:
                stats.reused_tokens = cache.length
        if not reuse:
            self._start = max(0, P - W)
            stats.truncated_tokens = self._start
            cache.reset()
            fed = self._start
        self._window = W
        self._rows = [list(ids)]
        stats.prefilled_tokens = P - fed
        logits = self._forward(torch.tensor([ids[fed:]], device=self.device))  # (1, V)
        if rows > 1:
            cache.copy_row0(rows)  # N samples share one prefill
            self._rows = [list(ids) for _ in range(rows)]
            logits = logits.expand(rows, -1)
        return logits

    def _decode(
        self,
        logits: torch.Tensor,
        max_new_tokens: int,
        temperature: float,
        top_k: int | None,
        top_p: float | None,
        generators: list[torch.Generator],
        stats: GenerationStats,
    ) -> Iterator[torch.Tensor]:
        """Yield the next token of every row (rows,), max_new_tokens times; the last one is never fed."""
        keep = max(1, self._window // 2)
        for step in range(max_new_tokens):
            nxt = sample_next(logits, temperature, top_k, top_p, generators)  # (rows,)
            for row, tok in zip(self._rows, nxt.tolist()):
                row.append(tok)
            stats.new_tokens += len(self._rows)
            yield nxt
            if step + 1 == max_new_tokens:
                return
            t = len(self._rows[0])
            if t - self._start > self._window:
                # Window full: keep the last `keep` tokens and re-encode them from position 0.
                self._start = t - keep
                self.cache.reset()
                stats.reencodes += 1
                tokens = torch.tensor([r[self._start :] for r in self._rows], device=self.device)  # (rows, keep)
            else:
                tokens = nxt[:, None]  # (rows, 1)
            logits = self._forward(tokens)

    # --- public API ----------------------------------------------------------------------------------
    def generate_ids(
        self,
        ids: Sequence[int],
        max_new_tokens: int,
        temperature: float = 0.0,
        top_k: int | None = None,
        top_p: float | None = None,
        window: int | None = None,
        seed: int | None = None,
        stop_ids: Iterable[int] | None = None,
        truncate: bool = False,
    ) -> list[int]:
        """The new token ids (the stop id that ended generation is not included).

        temperature 0 is greedy; top_k above the vocabulary is clamped (no filter); `stop_ids` defaults to
        the tokenizer's end-of-text id (pass [] to never stop early).
        """
        return list(self._iter_ids(ids, max_new_tokens, temperature, top_k, top_p, window, seed, stop_ids, truncate)())

    def stream_ids(
        self,
        ids: Sequence[int],
        max_new_tokens: int,
        temperature: float = 0.0,
        top_k: int | None = None,
        top_p: float | None = None,
        window: int | None = None,
        seed: int | None = None,
        stop_ids: Iterable[int] | None = None,
        truncate: bool = False,
    ) -> Iterator[int]:
        """`generate_ids` one id at a time, as each is decided (validated now, before the first id)."""
        return self._iter_ids(ids, max_new_tokens, temperature, top_k, top_p, window, seed, stop_ids, truncate)()

    @property
    def conversation_ids(self) -> list[int]:
        """The tokens of the last single-row call (prompt + generated, the stop id included): a next prompt
        that starts with exactly these reuses the cache."""
        return list(self._rows[0]) if self._valid and len(self._rows) == 1 else []

    def _iter_ids(
        self,
        ids: Sequence[int],
        max_new_tokens: int,
        temperature: float,
        top_k: int | None,
        top_p: float | None,
        window: int | None,
        seed: int | None,
        stop_ids: Iterable[int] | None,
        truncate: bool,
    ) -> Callable[[], Iterator[int]]:
        """Validate now; return a generator function that prefills and yields new ids one at a time."""
        top_k = validate_sampling(temperature, top_k, top_p, self.vocab_size)
        self._check_count("max_new_tokens", max_new_tokens, 0)
        ids, W = self._check_ids(ids, window, truncate)
        stops = set(stop_ids) if stop_ids is not None else {self.tokenizer.eot_id}

        def run() -> Iterator[int]:
            stats = GenerationStats(prompt_tokens=len(ids), stop_reason="length")
            self.last_stats = stats
            if max_new_tokens == 0:
                return
            logits = self._prefill(ids, 1, W, stats)
            row_seed = seed if seed is not None else _fresh_seed()
            gens = seeded_generators([row_seed], self.device) if temperature else []
            steps = self._decode(logits, max_new_tokens, temperature, top_k, top_p, gens, stats)
            try:
                for nxt in steps:
                    tok = int(nxt[0])
                    if tok in stops:
                        stats.stop_reason = "eot"
                        return
                    yield tok
            finally:
                steps.close()

        return run

    def stream(
        self,
        prompt: str,
        max_new_tokens: int = 256,
        temperature: float = 0.0,
        top_k: int | None = None,
        top_p: float | None = None,
        window: int | None = None,
        seed: int | None = None,
        stop: Sequence[str] = (),
        stop_ids: Iterable[int] | None = None,
        truncate: bool = False,
    ) -> Iterator[str]:
        """Yield text pieces as they are decided: whole UTF-8 characters only, never past a stop string.

        Arguments are validated when `stream` is called (before the first piece), not lazily.
        """
        ids = self._encode(prompt)
        run = self._iter_ids(ids, max_new_tokens, temperature, top_k, top_p, window, seed, stop_ids, truncate)
        return self._stream_text(run(), stop)

    def _stream_text(self, tokens: Iterator[int], stop: Sequence[str]) -> Iterator[str]:
        utf8, stops = Utf8Stream(), StopStringFilter(stop)
        try:
            for tok in tokens:
                piece = stops.feed(utf8.feed(self.tokenizer.decode_bytes([tok])))
                if piece:
                    yield piece
                if stops.stopped:
                    self.last_stats.stop_reason = "stop"
                    return
            tail = stops.feed(utf8.flush()) + stops.flush()
            if tail:
                yield tail
        finally:
            tokens.close()  # type: ignore[attr-defined]

    def generate(self, prompt: str, **kwargs: Any) -> str:
        """The whole response of `stream` as one string."""
        return "".join(self.stream(prompt, **kwargs))

    def answer(
        self,
        question: str,
        mode: str = "cot",
        extractor: Extractor | None = None,
        max_new_tokens: int = 256,
        **kwargs: Any,
    ) -> ReasonedAnswer:
        """Chain of thought ("cot"), a direct answer ("direct") or no cue at all ("neutral": the model's own
        habit) to a default-experiment question: the response split into its reasoning and the extracted
        final answer (greedy unless told)."""
        if mode not in ("cot", "direct", "neutral"):
            raise GenerationError(f"mode: must be 'cot', 'direct' or 'neutral', got {mode!r}")
        if not isinstance(question, str) or not question.strip():
            raise GenerationError("question is empty")
        kwargs.setdefault("stop", RESPONSE_STOPS)
        text = self.generate(experiment_prompt(question, mode), max_new_tokens=max_new_tokens, **kwargs)
        return split_answer(text, extractor, tokens=self.last_stats.new_tokens)

    def sample_batch(
        self,
        ids: Sequence[int],
        n: int,
        max_new_tokens: int = 256,
        temperature: float = 0.8,
        top_k: int | None = None,
        top_p: float | None = None,
        window: int | None = None,
        seed: int | None = None,
        stop: Sequence[str] = (),
        stop_ids: Iterable[int] | None = None,
        truncate: bool = False,
    ) -> Iterator[list[tuple[int, str, int]]]:
        """N samples of one prompt: ONE prefill, expanded to N cache rows, decoded as a batch of N.

        Sample i draws from a generator seeded with `derive_seed(seed, i)`, so it equals
        `generate_ids(ids, ..., seed=derive_seed(seed, i))`. Yields, after each decoding step, the samples
        that finished in it as (index, text, tokens sampled); closing the iterator stops decoding.
        """
        top_k = validate_sampling(temperature, top_k, top_p, self.vocab_size)
        self._check_count("n", n, 1)
        self._check_count("max_new_tokens", max_new_tokens, 1)
        ids, W = self._check_ids(ids, window, truncate)
        stops = set(stop_ids) if stop_ids is not None else {self.tokenizer.eot_id}
        base = seed if seed is not None else _fresh_seed()
        return self._batch(ids, n, W, max_new_tokens, temperature, top_k, top_p, base, stop, stops)

    def _batch(self, ids, n, W, max_new_tokens, temperature, top_k, top_p, base, stop, stops):
        stats = GenerationStats(prompt_tokens=len(ids), stop_reason="length")
        self.last_stats = stats
        logits = self._prefill(ids, n, W, stats)
        gens = seeded_generators([derive_seed(base, i) for i in range(n)], self.device) if temperature else []
        utf8 = [Utf8Stream() for _ in range(n)]
        filters = [StopStringFilter(stop) for _ in range(n)]
        texts = [[] for _ in range(n)]
        counts = [0] * n
        active = set(range(n))

        def finish(i: int) -> tuple[int, str, int]:
            texts[i].append(filters[i].feed(utf8[i].flush()) + filters[i].flush())
            active.discard(i)
            return (i, "".join(texts[i]), counts[i])

        steps = self._decode(logits, max_new_tokens, temperature, top_k, top_p, gens, stats)
        try:
            for step, nxt in enumerate(steps):
                done = []
                for i, tok in enumerate(nxt.tolist()):
                    if i not in active:
                        continue
                    counts[i] += 1
                    if tok in stops:
                        done.append(finish(i))
                        continue
                    texts[i].append(filters[i].feed(utf8[i].feed(self.tokenizer.decode_bytes([tok]))))
                    if filters[i].stopped or step + 1 == max_new_tokens:
                        done.append(finish(i))
                if done:
                    yield done
                if not active:
                    return
        finally:
            steps.close()
            # Finished rows keep decoding in lock step; count only the tokens of live samples as cost.
            stats.new_tokens = sum(counts)

    def majority_vote(
        self,
        prompt: str,
        n: int,
        temperature: float = 0.8,
        top_k: int | None = None,
        top_p: float | None = None,
        max_new_tokens: int = 256,
        seed: int | None = None,
        extractor: Extractor | None = None,
        early_stop: bool = True,
        stop: Sequence[str] = RESPONSE_STOPS,
        stop_ids: Iterable[int] | None = None,
        window: int | None = None,
        truncate: bool = False,
    ) -> VoteResult:
        """Self-consistency: N samples in one batch, answers extracted, the winner, tally, tie and savings.

        A tie is reported (`tie=True`, `tied` = all tied answers, `answer=None`), never settled silently.
        With `early_stop` decoding ends once the leader cannot be overtaken; `saved` counts the samples cut.
        """
        ids = self._encode(prompt)
        batches = self.sample_batch(
            ids, n, max_new_tokens, temperature, top_k, top_p, window, seed, stop, stop_ids, truncate
        )
        return run_vote(batches, n, extractor, early_stop)
