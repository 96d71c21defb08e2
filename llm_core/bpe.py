"""Byte-level BPE training, written in tiktoken's file format.

Byte-pair encoding (Sennrich et al., "Neural Machine Translation of Rare Words with Subword Units", 2016)
as used by GPT-2 (Radford et al., 2019): start from the 256 single bytes, so every string is encodable,
and repeatedly add the most frequent adjacent pair of tokens as a new token. Text is first cut into
pre-tokens by a regex (words, numbers, punctuation runs, whitespace) and merges never cross a pre-token
boundary, so a token never spans e.g. the end of one word and the start of the next.

The result is a dict `token bytes -> rank` ("mergeable ranks"). The rank is both the token id and the
merge priority: tiktoken encodes a piece by repeatedly merging the adjacent pair whose concatenation has
the lowest rank, which replays the training merges in order.

Training is fast because it works on *unique* pre-tokens weighted by their counts, and after each merge
it only revisits the words that contain the merged pair, updating pair counts incrementally; the best
pair comes from a lazy max-heap instead of a scan over all pairs.
"""
from __future__ import annotations

import base64
import heapq
import json
from collections import Counter, defaultdict
from pathlib import Path
from typing import Iterable

import regex

from .errors import ConfigError, DataError

EOT_TOKEN = "<|endoftext|>"

# GPT-2's split pattern with one change: `\p{N}` instead of ` ?\p{N}+`, so EVERY digit is its own
# pre-token and hence its own token. A number is then always spelled digit by digit, whatever merges
# the corpus suggests ("1234" never becomes "12" + "34" in one place and "123" + "4" in another),
# which is what lets a small model learn column-wise arithmetic.
DEFAULT_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""

# Not "tokenizer.json": that is Hugging Face's file name, and an exported folder holds one of those.
TOKENIZER_JSON = "workbench_tokenizer.json"
LEGACY_TOKENIZER_JSON = "tokenizer.json"  # what folders written before the rename hold (still read)
BPE_FORMAT = "llm-workbench-bpe"


def _check_args(vocab_size: int, special_tokens: tuple[str, ...], pattern: str) -> None:
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, int):
        raise ConfigError(f"vocab_size: must be an integer, got {vocab_size!r}")
    minimum = max(257, 256 + len(special_tokens))
    if vocab_size < minimum:
        raise ConfigError(
            f"vocab_size: must be >= {minimum} (256 byte tokens + special tokens + at least one merge), "
            f"got {vocab_size}"
        )
    if len(set(special_tokens)) != len(special_tokens) or any(not s for s in special_tokens):
        raise ConfigError(f"special_tokens: must be distinct non-empty strings, got {list(special_tokens)!r}")
    if EOT_TOKEN not in special_tokens:
        raise ConfigError(
            f"special_tokens: must include {EOT_TOKEN!r} (every training example ends with it), "
            f"got {list(special_tokens)!r}"
        )
    try:
        regex.compile(pattern)
    except regex.error as exc:
        raise ConfigError(f"pattern: not a valid regex ({exc})") from None


def count_pretokens(texts: Iterable[str], pattern: str, special_tokens: tuple[str, ...]) -> Counter[str]:
    """Frequency of every pre-token in `texts`; special-token strings are cut out first (never merged)."""
    splitter = regex.compile(pattern)
    special = regex.compile("|".join(regex.escape(s) for s in special_tokens)) if special_tokens else None
    counts: Counter[str] = Counter()
    for text in texts:
        if not isinstance(text, str):
            raise DataError(f"training text must be a str, got {type(text).__name__}")
        chunks = special.split(text) if special else [text]
        for chunk in chunks:
            counts.update(splitter.findall(chunk))
    return counts


def _merge_word(word: tuple[int, ...], a: int, b: int, new: int) -> tuple[int, ...]:
    """Replace non-overlapping occurrences of (a, b) in `word`, left to right, by `new`."""
    out: list[int] = []
    i, n = 0, len(word)
    while i < n:
        if i + 1 < n and word[i] == a and word[i + 1] == b:
            out.append(new)
            i += 2
        else:
            out.append(word[i])
            i += 1
    return tuple(out)


def train_bpe(
    texts: Iterable[str],
    vocab_size: int,
    pattern: str = DEFAULT_PATTERN,
    special_tokens: tuple[str, ...] | list[str] = (EOT_TOKEN,),
) -> dict[bytes, int]:
    """Learn mergeable ranks (256 single bytes first, then merges) for a total vocabulary of `vocab_size`.

    `vocab_size` counts the special tokens too (they take the ids after the ranks, see `save_bpe`). On a
    corpus too small to support that many merges, training stops early with a smaller vocabulary.
    Ties between equally frequent pairs go to the pair of lower token ids, so results are deterministic.
    """
    special_tokens = tuple(special_tokens)
    _check_args(vocab_size, special_tokens, pattern)
    counts = count_pretokens(texts, pattern, special_tokens)
    if not counts:
        raise DataError("training text is empty: nothing to learn merges from")

    token_bytes: list[bytes] = [bytes([i]) for i in range(256)]
    ranks: dict[bytes, int] = {t: i for i, t in enumerate(token_bytes)}
    words: list[tuple[int, ...]] = [tuple(w.encode("utf-8")) for w in counts]
    freqs: list[int] = list(counts.values())

    # pair -> weighted count, and pair -> words that (may) contain it (stale entries are harmless).
    pair_counts: dict[tuple[int, int], int] = defaultdict(int)
    pair_words: dict[tuple[int, int], set[int]] = defaultdict(set)
    for wi, (word, f) in enumerate(zip(words, freqs)):
        for pair in zip(word, word[1:]):
            pair_counts[pair] += f
            pair_words[pair].add(wi)

    # Max-heap via negated counts; entries go stale when a count changes and are skipped when popped.
    heap = [(-c, pair) for pair, c in pair_counts.items()]
    heapq.heapify(heap)

    n_merges = vocab_size - 256 - len(special_tokens)
    while len(ranks) < 256 + n_merges and heap:
        neg, pair = heapq.heappop(heap)
        if pair_counts.get(pair, 0) != -neg or neg == 0:
            continue  # stale entry
        a, b = pair
        merged = token_bytes[a] + token_bytes[b]
        # Two different pairs can spell the same bytes ("ab"+"c", "a"+"bc"): reuse the existing token.
        new = ranks.get(merged)
        if new is None:
            new = len(token_bytes)
            token_bytes.append(merged)
            ranks[merged] = new

        touched: set[tuple[int, int]] = set()
        for wi in sorted(pair_words.pop(pair)):
            word = words[wi]
            new_word = _merge_word(word, a, b, new)
            if new_word == word:
                continue
            f = freqs[wi]
            # Incremental update: remove the old word's pairs, add the new word's pairs.
            for p in zip(word, word[1:]):
                pair_counts[p] -= f
                touched.add(p)
            for p in zip(new_word, new_word[1:]):
                pair_counts[p] += f
                pair_words[p].add(wi)
                touched.add(p)
            words[wi] = new_word
        pair_counts.pop(pair, None)
        touched.discard(pair)
        for p in touched:
            c = pair_counts[p]
            if c > 0:
                heapq.heappush(heap, (-c, p))
            else:
                del pair_counts[p]
    return ranks


def save_bpe(
    ranks: dict[bytes, int],
    folder: str | Path,
    pattern: str = DEFAULT_PATTERN,
    special_tokens: tuple[str, ...] | list[str] = (EOT_TOKEN,),
    name: str = "bpe",
) -> Path:
    """Write `<name>.tiktoken` (base64 token, space, rank per line) and `workbench_tokenizer.json` into `folder`.

    Special tokens get the ids right after the highest rank, in the order given. Output depends only on
    the arguments, so the same ranks always give byte-identical files.
    """
    if not name or any(c in name for c in "/\\") or name.startswith("."):
        raise ConfigError(f"tokenizer name: must be a plain file name, got {name!r}")
    ordered = sorted(ranks.items(), key=lambda kv: kv[1])
    if [r for _, r in ordered] != list(range(len(ordered))):
        raise ConfigError("ranks: must be the distinct ids 0..N-1")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vocab_file = f"{name}.tiktoken"
    lines = [f"{base64.b64encode(tok).decode('ascii')} {rank}\n" for tok, rank in ordered]
    (folder / vocab_file).write_text("".join(lines), encoding="ascii")
    meta = {
        "format": BPE_FORMAT,
        "name": name,
        "pattern": pattern,
        "special_tokens": {s: len(ordered) + i for i, s in enumerate(special_tokens)},
        "vocab_file": vocab_file,
    }
    (folder / TOKENIZER_JSON).write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    remove_legacy_meta(folder)
    return folder


def remove_legacy_meta(folder: Path) -> None:
    """Delete a pre-rename workbench `tokenizer.json` next to a new `workbench_tokenizer.json` (two files
    describing one tokenizer would drift apart); a Hugging Face `tokenizer.json` there is left alone."""
    legacy = folder / LEGACY_TOKENIZER_JSON
    try:
        meta = json.loads(legacy.read_text(encoding="utf-8"))
    except (OSError, ValueError):  # absent, unreadable or not JSON: not ours to delete
        return
    if isinstance(meta, dict) and (meta.get("format") == BPE_FORMAT or "builtin" in meta):
        legacy.unlink()


def read_ranks(path: Path) -> dict[bytes, int]:
    """Parse a `.tiktoken` ranks file (our own reader, so loading never touches tiktoken's download cache)."""
    ranks: dict[bytes, int] = {}
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: vocabulary file not found") from None
    for lineno, line in enumerate(data.splitlines(), 1):
        if not line.strip():
            continue
        try:
            token, rank = line.split()
            ranks[base64.b64decode(token, validate=True)] = int(rank)
        except (ValueError, base64.binascii.Error):
            raise DataError(f"{path}:{lineno}: expected '<base64 token> <rank>', got {line[:60]!r}") from None
    if sorted(ranks.values()) != list(range(len(ranks))):
        raise DataError(f"{path}: ranks are not the distinct ids 0..{len(ranks) - 1}")
    return ranks
