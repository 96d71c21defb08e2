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

Every public method takes the decoding settings as one validated `SamplingParams` (`params.py`).

How a forward pass runs is the `Decoder`'s (`fast.py`): by default the fastest exact path on the device
(the head on the last position only, from a layout copy of its weight; compiled on CUDA), with bf16,
compile on CPU and thread settings as opt-in `FastPaths`; `Engine(model, tok, fast=False)` runs the
model's plain forward on the cache.

Multi-turn: the engine remembers the tokens of the last single-row call (prompt + generated). When the next
prompt extends them, only the new tokens are prefilled and `last_stats.reused_tokens` says how many cached
positions were reused. `reset()` starts a new conversation. Validation happens before any state changes,
so a refused call leaves the cache as it was.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import torch

from ..errors import GenerationError
from .beam import BeamResult, beam_search
from .fast import OFF as FAST_OFF, Decoder, FastPaths, walk_modules
from .kv_cache import KVCache
from .params import GREEDY, SamplingParams
from .reasoning import Extractor, ReasonedAnswer, VoteResult, experiment_prompt, run_vote, split_answer
from .sampling import derive_seed, sample_next, seeded_generators, top_k_keeps_all, top_p_keeps_all
from .screened_head import ScreenedLogits
from .streaming import TextDecoder, TextStream

# Where an Alpaca-format response ends when a small model runs on (see llm_core.formatting.split_response).
RESPONSE_STOPS = ("\n### ", "<|endoftext|>")


@contextmanager
def eval_mode(model: torch.nn.Module) -> Iterator[None]:
    """Dropout off for a forward pass, then every module back in the mode it had (a model sampled mid-
    training, or with one submodule left training). Only the modules found training are switched, not
    the whole tree twice as `eval()` / `train(was)` would: those two walks took 0.2 ms a token on
    gpt2-mini, 6% of a 3.2 ms decode step; finding that none is training takes 0.01 ms."""
    training = [m for m in walk_modules(model) if m.training]
    for m in training:
        m.training = False
    try:
        yield
    finally:
        for m in training:
            m.training = True


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
    screened_steps: int = 0  # steps whose head the bf16 screen answered (`screened_head`)
    screen_fp32_logits: int = 0  # fp32 logits those steps computed (greedy candidates, sampled draws)

    @property
    def reused(self) -> bool:
        return self.reused_tokens > 0


def _fresh_seed() -> int:
    return int(torch.randint(0, 2**62, (1,)).item())  # an unseeded call draws from torch's global RNG


class Engine:
    """Generation on top of a GPT and a tokenizer. See the module docstring for the window rule."""

    def __init__(self, model: torch.nn.Module, tokenizer: Any, fast: FastPaths | bool = True) -> None:
        """`fast`: the decode paths allowed (`fast.FastPaths`; True = every exact one this device has, False =
        the model's plain forward on the cache). `notices` lists what was asked for but is not available."""
        if isinstance(fast, bool):
            fast = FastPaths() if fast else FAST_OFF
        if not isinstance(fast, FastPaths):
            raise GenerationError(f"fast: must be true, false or a FastPaths, got {type(fast).__name__}")
        self.model = model
        self.tokenizer = tokenizer
        self.context_length: int = model.config.context_length
        self.vocab_size: int = model.config.vocab_size
        self.device = next(model.parameters()).device
        self.decoder = Decoder(model, fast)
        self.cache: KVCache | None = None
        self.last_stats = GenerationStats()
        self.reset()

    @property
    def notices(self) -> list[str]:
        """One-line notices about fast paths that were asked for and are not in use (and why)."""
        return list(self.decoder.notices)

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
    def _check_ids(self, ids: Sequence[int], params: SamplingParams) -> tuple[list[int], int]:
        window, truncate = params.window, params.truncate
        if isinstance(ids, torch.Tensor):
            ids = ids.flatten().tolist()
        ids = list(ids)
        if not ids:
            raise GenerationError("prompt is empty (0 tokens)")
        for i in ids:
            if not isinstance(i, int) or isinstance(i, bool) or not 0 <= i < self.vocab_size:
                raise GenerationError(f"prompt token {i!r} is not an id in [0, {self.vocab_size})")
        if window is not None and window > self.context_length:
            raise GenerationError(f"window: must be an integer in [1, {self.context_length}], got {window!r}")
        W = window or self.context_length
        if len(ids) > W and window is None and not truncate:
            raise GenerationError(
                f"prompt is {len(ids)} tokens, longer than the context length {self.context_length} "
                "(opt into left truncation or a window)"
            )
        return ids, W

    def _encode(self, prompt: str | Sequence[int]) -> Sequence[int]:
        """A text prompt's ids (token ids pass through, checked later by `_check_ids`)."""
        if isinstance(prompt, (list, tuple, torch.Tensor)):
            return prompt
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
    def _forward(self, tokens: torch.Tensor, screen: bool = False) -> "torch.Tensor | ScreenedLogits":
        """Run new tokens (B, T) through the model on top of the cache; return last-position logits (B, V).
        `screen`: the step is read by greedy or plain temperature sampling only (see `Decoder`)."""
        T = tokens.shape[1]
        if self.cache is None:  # _prefill makes the cache before any forward
            raise GenerationError("the engine has no KV cache: a forward ran before the prompt's prefill")
        positions = torch.arange(self.cache.length, self.cache.length + T, device=self.device)
        self._valid = False  # an interrupted forward leaves half-written layers: start over next time
        with eval_mode(self.model), torch.inference_mode():  # e.g. sampling mid-training: no dropout
            logits = self.decoder(tokens, positions, self.cache, screen)  # (B, V)
        self.cache.advance(T)
        self._valid = True
        return logits

    def _screens(self, params: SamplingParams) -> bool:
        """The steps of `params` may be screened: greedy, or temperature sampling with no top-k / top-p
        filter (the rules `sampling.sample_next` reads a `ScreenedLogits` by)."""
        return params.temperature == 0 or (top_k_keeps_all(params.top_k_for(self.vocab_size), self.vocab_size)
                                           and top_p_keeps_all(params.top_p))

    def _prefill(self, ids: list[int], rows: int, W: int, stats: GenerationStats,
                 screen: bool = False) -> "torch.Tensor | ScreenedLogits":
        """Make the cache hold the prompt (reusing the previous turn when it is a prefix); logits (rows, V)
        (`screen`: see `_forward`)."""
        run_model = self.decoder.model()  # the model itself, or its bf16 copy
        if self.cache is None or not self.cache.matches(run_model, rows, W):
            self.cache = KVCache.for_model(run_model, rows, W)
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
        logits = self._forward(torch.tensor([ids[fed:]], device=self.device), screen)  # (1, V)
        if rows > 1:
            cache.copy_row0(rows)  # N samples share one prefill
            self._rows = [list(ids) for _ in range(rows)]
            logits = logits.expand(rows, -1)
        return logits

    def _decode(self, logits: "torch.Tensor | ScreenedLogits", max_new_tokens: int, params: SamplingParams,
                seeds: list[int], stats: GenerationStats) -> Iterator[torch.Tensor]:
        """Yield the next token of every row (rows,), max_new_tokens times; the last one is never fed.
        Row i samples from a generator seeded with seeds[i] (none are needed when greedy)."""
        keep = max(1, self._window // 2)
        temperature, top_k, top_p = params.temperature, params.top_k_for(self.vocab_size), params.top_p
        generators = seeded_generators(seeds, self.device) if temperature else []
        screen = self._screens(params)
        work = torch.empty(logits.shape, dtype=torch.float32, device=logits.device) if temperature else None
        screened = self.decoder.screen
        steps0, fp32_0 = screened.steps, screened.candidates
        for step in range(max_new_tokens):
            nxt = sample_next(logits, temperature, top_k, top_p, generators, work)  # (rows,)
            stats.screened_steps, stats.screen_fp32_logits = screened.steps - steps0, screened.candidates - fp32_0
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
            logits = self._forward(tokens, screen)

    # --- public API ----------------------------------------------------------------------------------
    def generate_ids(self, ids: Sequence[int], max_new_tokens: int, params: SamplingParams = GREEDY) -> list[int]:
        """The new token ids (the stop id that ended generation is not included).

        `params.stop_ids` defaults to the tokenizer's end-of-text id (pass () to never stop early).
        """
        return list(self.stream_ids(ids, max_new_tokens, params))

    def stream_ids(self, ids: Sequence[int], max_new_tokens: int, params: SamplingParams = GREEDY) -> Iterator[int]:
        """`generate_ids` one id at a time, as each is decided (validated now, before the first id)."""
        self._check_count("max_new_tokens", max_new_tokens, 0)
        ids, W = self._check_ids(ids, params)
        stops = self._stop_ids(params)

        def run() -> Iterator[int]:
            stats = GenerationStats(prompt_tokens=len(ids), stop_reason="length")
            self.last_stats = stats
            if max_new_tokens == 0:
                return
            logits = self._prefill(ids, 1, W, stats, self._screens(params))
            seed = params.seed if params.seed is not None else _fresh_seed()
            steps = self._decode(logits, max_new_tokens, params, [seed], stats)
            try:
                for nxt in steps:
                    tok = int(nxt[0])
                    if tok in stops:
                        stats.stop_reason = "eot"
                        return
                    yield tok
            finally:
                steps.close()

        return run()

    def _stop_ids(self, params: SamplingParams) -> set[int]:
        return set(params.stop_ids) if params.stop_ids is not None else {self.tokenizer.eot_id}

    @property
    def conversation_ids(self) -> list[int]:
        """The tokens of the last single-row call (prompt + generated, the stop id included): a next prompt
        that starts with exactly these reuses the cache."""
        return list(self._rows[0]) if self._valid and len(self._rows) == 1 else []

    def stream(self, prompt: str | Sequence[int], max_new_tokens: int = 256,
               params: SamplingParams = GREEDY) -> Iterator[str]:
        """Yield text pieces as they are decided: whole UTF-8 characters only, never past a stop string
        (`params.stop`). Validated when `stream` is called (before the first piece), not lazily."""
        text = TextStream(self.stream_ids(self._encode(prompt), max_new_tokens, params),
                          self.tokenizer.decode_bytes, params.stop)

        def pieces() -> Iterator[str]:
            yield from text
            if text.stopped:
                self.last_stats.stop_reason = "stop"

        return pieces()

    def generate(self, prompt: str | Sequence[int], max_new_tokens: int = 256,
                 params: SamplingParams = GREEDY) -> str:
        """The whole response of `stream` as one string."""
        return "".join(self.stream(prompt, max_new_tokens, params))

    def answer(self, question: str, mode: str = "cot", max_new_tokens: int = 256,
               params: SamplingParams | None = None, extractor: Extractor | None = None) -> ReasonedAnswer:
        """Chain of thought ("cot"), a direct answer ("direct") or no cue at all ("neutral": the model's own
        habit) to a default-experiment question: the response split into its reasoning and the extracted
        final answer (greedy, ending at the response stops, unless `params` says otherwise)."""
        if mode not in ("cot", "direct", "neutral"):
            raise GenerationError(f"mode: must be 'cot', 'direct' or 'neutral', got {mode!r}")
        if not isinstance(question, str) or not question.strip():
            raise GenerationError("question is empty")
        params = params if params is not None else SamplingParams(stop=RESPONSE_STOPS)
        text = self.generate(experiment_prompt(question, mode), max_new_tokens, params)
        return split_answer(text, extractor, tokens=self.last_stats.new_tokens)

    def sample_batch(self, ids: Sequence[int], n: int, max_new_tokens: int = 256,
                     params: SamplingParams = SamplingParams(temperature=0.8),
                     ) -> Iterator[list[tuple[int, str, int]]]:
        """N samples of one prompt: ONE prefill, expanded to N cache rows, decoded as a batch of N.

        Sample i draws from a generator seeded with `derive_seed(params.seed, i)`, so it equals
        `generate_ids(ids, ..., params.replace(seed=derive_seed(params.seed, i)))`. Yields, after each
        decoding step, the samples that finished in it as (index, text, tokens sampled); closing the
        iterator stops decoding.
        """
        self._check_count("n", n, 1)
        self._check_count("max_new_tokens", max_new_tokens, 1)
        ids, W = self._check_ids(ids, params)
        base = params.seed if params.seed is not None else _fresh_seed()
        return self._batch(ids, n, W, max_new_tokens, params, base)

    def sample_ids(self, ids: Sequence[int], n: int, max_new_tokens: int,
                   params: SamplingParams = SamplingParams(temperature=1.0)) -> list[tuple[list[int], bool]]:
        """N continuations of one prompt as token ids, from ONE prefill decoded as a batch of N (RL rollouts):
        (ids, stopped) per sample. A sample that ended on a stop id keeps it as its last id, so a policy
        gradient reaches the decision to stop too. Sample i equals `generate_ids` seeded with
        `derive_seed(params.seed, i)` (plus that stop id)."""
        self._check_count("n", n, 1)
        self._check_count("max_new_tokens", max_new_tokens, 1)
        ids, W = self._check_ids(ids, params)
        stats = GenerationStats(prompt_tokens=len(ids), stop_reason="length")
        self.last_stats = stats
        stops = self._stop_ids(params)
        base = params.seed if params.seed is not None else _fresh_seed()
        out: list[list[int]] = [[] for _ in range(n)]
        done = [False] * n
        steps = self._decode(self._prefill(ids, n, W, stats, self._screens(params)), max_new_tokens, params,
                             [derive_seed(base, i) for i in range(n)], stats)
        try:
            for nxt in steps:
                for i, tok in enumerate(nxt.tolist()):
                    if not done[i]:
                        out[i].append(tok)
                        done[i] = tok in stops
                if all(done):
                    break
        finally:
            steps.close()
            stats.new_tokens = sum(map(len, out))
        return list(zip(out, done))

    def _batch(self, ids: list[int], n: int, W: int, max_new_tokens: int, params: SamplingParams,
               base: int) -> Iterator[list[tuple[int, str, int]]]:
        stats = GenerationStats(prompt_tokens=len(ids), stop_reason="length")
        self.last_stats = stats
        stops = self._stop_ids(params)
        logits = self._prefill(ids, n, W, stats, self._screens(params))
        decoders = [TextDecoder(self.tokenizer.decode_bytes, params.stop) for _ in range(n)]
        texts: list[list[str]] = [[] for _ in range(n)]
        counts = [0] * n
        active = set(range(n))

        def finish(i: int) -> tuple[int, str, int]:
            texts[i].append(decoders[i].finish())
            active.discard(i)
            return (i, "".join(texts[i]), counts[i])

        steps = self._decode(logits, max_new_tokens, params, [derive_seed(base, i) for i in range(n)], stats)
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
                    texts[i].append(decoders[i].feed(tok))
                    if decoders[i].stopped or step + 1 == max_new_tokens:
                        done.append(finish(i))
                if done:
                    yield done
                if not active:
                    return
        finally:
            steps.close()
            # Finished rows keep decoding in lock step; count only the tokens of live samples as cost.
            stats.new_tokens = sum(counts)

    def beam_search(self, prompt_ids: Sequence[int], width: int, max_new_tokens: int, length_penalty: float = 0.0,
                    stop_ids: Sequence[int] | None = None) -> BeamResult:
        """Beam search of `width` beams from ONE prefill (`beam.py`): the best beam's `.ids` and `.logprob`,
        and `.beams`, every final beam best first. GNMT length normalisation with alpha = `length_penalty`;
        stops on end-of-text or the default experiment's answer line; `stop_ids=()` never stops early."""
        return beam_search(self, self._encode(prompt_ids), width, max_new_tokens, length_penalty, stop_ids)

    def majority_vote(self, prompt: str | Sequence[int], n: int, max_new_tokens: int = 256,
                      params: SamplingParams | None = None, extractor: Extractor | None = None,
                      early_stop: bool = True) -> VoteResult:
        """Self-consistency: N samples in one batch, answers extracted, the winner, tally, tie and savings.

        `prompt` is text or token ids; `params` defaults to `VOTE_DEFAULTS` (temperature 0.8, the measured best
        for the default experiment) ending at the response stops.
        A tie is reported (`tie=True`, `tied` = all tied answers, `answer=None`), never settled silently.
        With `early_stop` decoding ends once the leader cannot be overtaken; `saved` counts the samples cut.
        """
        params = params if params is not None else VOTE_DEFAULTS
        batches = self.sample_batch(self._encode(prompt), n, max_new_tokens, params)
        return run_vote(batches, n, extractor, early_stop)


# The vote's defaults, each sample ending where an Alpaca response ends. Temperature 0.8: the best majority@16
# of (0.3, 0.5, 0.8) measured by `benchmarks/search_frontier.py` on the pretrained default checkpoint (all 200
# held-out problems: 96.5% at 0.8, 96.0% at 0.3 and 0.5, greedy CoT 96.0%; the three are within one problem,
# so it is the rule `llm_core.search.best_temperature` that picks, not a large effect).
VOTE_TEMPERATURE = 0.8
VOTE_DEFAULTS = SamplingParams(temperature=VOTE_TEMPERATURE, stop=RESPONSE_STOPS)
# How every accuracy evaluation decodes greedily (`workbench eval`, the search frontier, RL's held-out
# accuracy): ending where an Alpaca response ends, the context sliding past a long worked answer instead of
# cutting it (9% of the default held-out problems need more than the 256 positions).
EVAL_GREEDY = SamplingParams(stop=RESPONSE_STOPS, truncate=True)
