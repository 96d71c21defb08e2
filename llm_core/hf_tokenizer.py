"""Hugging Face tokenizer files for a tiktoken BPE, and a tiktoken BPE read back from such files.

tiktoken keeps a byte-level BPE as "mergeable ranks" (token bytes -> rank, the rank being both the id and
the merge priority). Hugging Face keeps the same BPE as a vocabulary (token string -> id) plus an ordered
list of merges: in `tokenizer.json` (the `tokenizers` library's format, model type "BPE",
https://huggingface.co/docs/tokenizers/api/models) or, for GPT-2 (Radford et al., 2019), in the original
`vocab.json` + `merges.txt`. Converting:
- ranks -> merges: a token of rank r >= 256 is the merge of two lower-ranked tokens; which two is found by
  running BPE on the token's own bytes with the ranks below r only (it stops at exactly two parts). Listing
  the merges in rank order makes merge priority == rank, the order tiktoken merges in. For GPT-2 this gives
  back its published merges.txt line for line.
- bytes -> strings: token strings are their bytes mapped through GPT-2's byte-to-unicode table (every byte
  to a printable character, space -> "Ġ"): the alphabet of the ByteLevel pre-tokenizer and decoder.
- pre-tokenizer: a `Split` on the encoding's own regex (so the project BPE's one-token-per-digit pattern
  survives), then ByteLevel with its built-in GPT-2 regex off. `ignore_merges` makes a piece that is a
  whole token map to it directly, which is what tiktoken does before merging.
Reading checks that the files describe a BPE tiktoken can run: no normalizer, the byte-level alphabet, ids
0..N-1 then the special tokens, every multi-byte token made by exactly one merge, merges in id order.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .bpe import EOT_TOKEN
from .errors import DataError
from .io import read_json_object, read_text_file, write_atomic

if TYPE_CHECKING:
    from .tokenizer import Tokenizer

HF_TOKENIZER_FILE = "tokenizer.json"
HF_TOKENIZER_CONFIG = "tokenizer_config.json"
HF_SPECIAL_TOKENS_MAP = "special_tokens_map.json"
GPT2_VOCAB_FILE = "vocab.json"
GPT2_MERGES_FILE = "merges.txt"
# GPT-2's split regex as its original encoder.py and HF's ByteLevel(use_regex=True) apply it.
GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""


@lru_cache(maxsize=1)
def byte_alphabet() -> tuple[str, ...]:
    """GPT-2's byte -> character table: printable Latin-1 bytes stand for themselves, the other 68 bytes
    (controls, space, DEL, NBSP, soft hyphen) take the code points from 256 up, in byte order."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table: dict[int, str] = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + extra)
            extra += 1
    return tuple(table[b] for b in range(256))


@lru_cache(maxsize=1)
def _tables() -> tuple[dict[int, str], dict[int, int | None]]:
    """str.translate tables (C speed for 50k tokens): Latin-1 code point -> alphabet character, and back;
    the back table deletes the 68 Latin-1 characters that are not in the alphabet (e.g. a plain space)."""
    alphabet = byte_alphabet()
    forward = {b: alphabet[b] for b in range(256)}
    back: dict[int, int | None] = {ord(c): b for b, c in enumerate(alphabet)}
    back.update({c: None for c in range(256) if c not in back})
    return forward, back


def to_unicode(token: bytes) -> str:
    return token.decode("latin-1").translate(_tables()[0])


def _from_unicode(text: str) -> bytes | None:
    """The bytes a byte-level token string spells, or None when it has a character outside the alphabet."""
    raw = text.translate(_tables()[1])
    if len(raw) != len(text):
        return None
    try:
        return raw.encode("latin-1")
    except UnicodeEncodeError:  # a character past the alphabet's last one
        return None


def _split_by_bpe(ranks: dict[bytes, int], token: bytes, max_rank: int) -> list[bytes]:
    """tiktoken's merge loop on `token` with only the ranks below `max_rank`: merge the lowest-ranked
    adjacent pair, leftmost on ties, until no pair is a token."""
    parts = [bytes([b]) for b in token]
    while len(parts) > 1:
        best, at = max_rank, -1
        for i in range(len(parts) - 1):
            rank = ranks.get(parts[i] + parts[i + 1])
            if rank is not None and rank < best:
                best, at = rank, i
        if at < 0:
            break
        parts[at:at + 2] = [parts[at] + parts[at + 1]]
    return parts


def _below(ranks: dict[bytes, int], part: bytes, rank: int) -> bool:
    return len(part) == 1 or ranks.get(part, rank) < rank


def bpe_merges(ranks: dict[bytes, int]) -> list[tuple[bytes, bytes]]:
    """The ordered merges that rebuild `ranks`: one pair per multi-byte token, in rank order."""
    merges: list[tuple[bytes, bytes]] = []
    for token, rank in sorted(ranks.items(), key=lambda kv: kv[1]):
        if len(token) == 1:
            continue
        # BPE ends in two parts, each a single byte or a token ranked below this one: when only one such
        # split exists it is the answer, no need to replay the merges (most of GPT-2's 50,000 tokens).
        splits = [i for i in range(1, len(token)) if _below(ranks, token[:i], rank) and _below(ranks, token[i:], rank)]
        if len(splits) == 1:
            merges.append((token[:splits[0]], token[splits[0]:]))
            continue
        parts = _split_by_bpe(ranks, token, rank)
        if len(parts) != 2:  # ranks that no merge sequence produces: not a BPE vocabulary
            raise DataError(f"token {token!r} (rank {rank}) is not the merge of two lower-ranked tokens")
        merges.append((parts[0], parts[1]))
    return merges


def _special_config(tokenizer: "Tokenizer", tokenizer_class: str, model_max_length: int | None) -> dict[str, Any]:
    eot = EOT_TOKEN
    config: dict[str, Any] = {
        "tokenizer_class": tokenizer_class,
        "bos_token": eot, "eos_token": eot, "unk_token": eot, "pad_token": eot,
        "add_prefix_space": False,
        "clean_up_tokenization_spaces": False,
        "added_tokens_decoder": {
            str(i): {"content": s, "lstrip": False, "normalized": False, "rstrip": False, "single_word": False,
                     "special": True}
            for s, i in sorted(tokenizer.special_tokens.items(), key=lambda kv: kv[1])
        },
    }
    if model_max_length is not None:
        config["model_max_length"] = model_max_length
    return config


def hf_tokenizer_json(tokenizer: "Tokenizer") -> dict[str, Any]:
    """The `tokenizer.json` (HF tokenizers format) of a tiktoken BPE: same pieces, same ids."""
    enc = tokenizer.encoding
    ranks: dict[bytes, int] = enc._mergeable_ranks
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [
            {"id": i, "content": s, "single_word": False, "lstrip": False, "rstrip": False, "normalized": False,
             "special": True}
            for s, i in sorted(tokenizer.special_tokens.items(), key=lambda kv: kv[1])
        ],
        "normalizer": None,
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": enc._pat_str}, "behavior": "Isolated", "invert": False},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False},
        ]},
        "post_processor": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False},
        "decoder": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False},
        "model": {
            "type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
            "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "ignore_merges": True,
            "vocab": {to_unicode(t): r for t, r in sorted(ranks.items(), key=lambda kv: kv[1])},
            # "a b" strings: every tokenizers version reads them (the byte alphabet has no plain space).
            "merges": [f"{to_unicode(a)} {to_unicode(b)}" for a, b in bpe_merges(ranks)],
        },
    }


def save_hf_tokenizer(tokenizer: "Tokenizer", folder: str | Path, model_max_length: int | None = None) -> list[str]:
    """Write the files `transformers.AutoTokenizer.from_pretrained(folder)` loads; return their names.

    Always `tokenizer.json` (+ `tokenizer_config.json`, `special_tokens_map.json`); for GPT-2 also its own
    `vocab.json` + `merges.txt`, so the slow `GPT2Tokenizer` works too. A project BPE gets the generic fast
    class: the slow GPT-2 class would apply GPT-2's regex, not the project's, and change the ids."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    data = hf_tokenizer_json(tokenizer)
    files: dict[str, str] = {HF_TOKENIZER_FILE: json.dumps(data, ensure_ascii=False) + "\n"}
    gpt2 = tokenizer.builtin == "gpt2"
    if gpt2:
        vocab = {**data["model"]["vocab"], **{s: i for s, i in tokenizer.special_tokens.items()}}
        files[GPT2_VOCAB_FILE] = json.dumps(vocab, ensure_ascii=False) + "\n"
        files[GPT2_MERGES_FILE] = "#version: 0.2\n" + "".join(m + "\n" for m in data["model"]["merges"])
    config = _special_config(tokenizer, "GPT2Tokenizer" if gpt2 else "PreTrainedTokenizerFast", model_max_length)
    files[HF_TOKENIZER_CONFIG] = json.dumps(config, indent=2, ensure_ascii=False) + "\n"
    special = {key: config[key] for key in ("bos_token", "eos_token", "unk_token", "pad_token")}
    files[HF_SPECIAL_TOKENS_MAP] = json.dumps(special, indent=2) + "\n"
    for name, text in files.items():
        write_atomic(folder / name, text)
    if not gpt2:  # a GPT-2 export written here before would leave a vocabulary that is not this one
        for stale in (GPT2_VOCAB_FILE, GPT2_MERGES_FILE):
            (folder / stale).unlink(missing_ok=True)
    return list(files)


@dataclass
class HFBPE:
    """A byte-level BPE read from Hugging Face files, in tiktoken's terms."""
    pattern: str
    ranks: dict[bytes, int]
    special_tokens: dict[str, int]
    source: Path  # the file it was read from (for messages)


def is_hf_tokenizer_folder(folder: Path) -> bool:
    return (folder / HF_TOKENIZER_FILE).is_file() or (
        (folder / GPT2_VOCAB_FILE).is_file() and (folder / GPT2_MERGES_FILE).is_file())


def _pattern(pre: Any, path: Path) -> str:
    """The split regex of a pre-tokenizer tiktoken can reproduce: Split(regex) + ByteLevel(no regex), or
    ByteLevel with its built-in GPT-2 regex."""
    def byte_level(p: Any) -> bool:
        return isinstance(p, dict) and p.get("type") == "ByteLevel" and not p.get("add_prefix_space", False)

    if byte_level(pre) and pre.get("use_regex", True):
        return GPT2_PATTERN
    steps = pre.get("pretokenizers") if isinstance(pre, dict) and pre.get("type") == "Sequence" else None
    if isinstance(steps, list) and len(steps) == 2 and byte_level(steps[1]) and not steps[1].get("use_regex", True):
        split = steps[0]
        regex = split.get("pattern", {}).get("Regex") if isinstance(split, dict) else None
        if (split.get("type") == "Split" and isinstance(regex, str) and split.get("behavior") == "Isolated"
                and not split.get("invert", False)):
            return regex
    kind = pre.get("type") if isinstance(pre, dict) else pre
    raise DataError(f"{path}: pre_tokenizer {kind!r} is not supported (need ByteLevel, or Split(regex, isolated) "
                    "then ByteLevel without its regex)")


def _parse_merges(raw: Any, path: Path) -> list[tuple[str, str]]:
    if not isinstance(raw, list):
        raise DataError(f"{path}: merges must be a list")
    merges: list[tuple[str, str]] = []
    for i, m in enumerate(raw):
        pair = m.split(" ") if isinstance(m, str) else m
        if not (isinstance(pair, list) and len(pair) == 2 and all(isinstance(p, str) and p for p in pair)):
            raise DataError(f"{path}: merge {i} ({str(m)[:40]!r}) is not a pair of tokens")
        merges.append((pair[0], pair[1]))
    return merges


def _build(vocab: Any, merges: list[tuple[str, str]], special: dict[str, int], pattern: str, path: Path) -> HFBPE:
    """Check that (vocab, merges) is a byte-level BPE in id order, and return its tiktoken ranks."""
    if not isinstance(vocab, dict) or not all(isinstance(i, int) and not isinstance(i, bool) for i in vocab.values()):
        raise DataError(f"{path}: vocab must map token strings to integer ids")
    ranks: dict[bytes, int] = {}
    for text, i in vocab.items():
        if text in special:
            continue
        token = _from_unicode(text)
        if token is None:
            raise DataError(f"{path}: token {text!r} is not in GPT-2's byte alphabet (not a byte-level BPE)")
        ranks[token] = i
    n = len(ranks)
    if sorted(ranks.values()) != list(range(n)):
        raise DataError(f"{path}: the ids of the non-special tokens are not 0..{n - 1}")
    if sorted(special.values()) != list(range(n, n + len(special))):
        raise DataError(f"{path}: special token ids must follow the {n} BPE tokens, got {special}")
    if any(bytes([b]) not in ranks for b in range(256)):
        raise DataError(f"{path}: the vocabulary does not hold all 256 single bytes (not a byte-level BPE)")
    made = 255
    for k, (a, b) in enumerate(merges):
        # Strings concatenate as their bytes do (the alphabet maps byte by byte): no decoding needed here.
        new = vocab.get(a + b) if a in vocab and b in vocab and a + b not in special else None
        if new is None:
            raise DataError(f"{path}: merge {k} ({a} {b}) joins or makes a token that is not in the vocabulary")
        if new <= made:  # tiktoken merges in id order: the merge list must be in that order too
            raise DataError(f"{path}: merge {k} ({a} {b}) makes id {new}, not after the previous merge's id {made}; "
                            "tiktoken needs merges in id order")
        made = new
    if len(merges) != n - 256:
        raise DataError(f"{path}: {len(merges)} merges for {n - 256} multi-byte tokens; every such token must be "
                        "made by exactly one merge")
    return HFBPE(pattern, ranks, special, path)


def read_hf_tokenizer(folder: str | Path) -> HFBPE:
    """The BPE in a Hugging Face folder: its `tokenizer.json`, else GPT-2's `vocab.json` + `merges.txt`.
    Raises DataError naming the file when it is missing or not a byte-level BPE tiktoken can run."""
    folder = Path(folder)
    path = folder / HF_TOKENIZER_FILE
    if path.is_file():
        data = read_json_object(path, DataError)
        model = data.get("model")
        if not isinstance(model, dict):
            raise DataError(f"{path}: no 'model' (neither a Hugging Face tokenizer.json nor a workbench tokenizer)")
        if model.get("type", "BPE") != "BPE":
            raise DataError(f"{path}: model type {model.get('type')!r} is not supported (need 'BPE')")
        for key in ("continuing_subword_prefix", "end_of_word_suffix"):
            if model.get(key):
                raise DataError(f"{path}: model.{key}={model[key]!r} is not supported by a byte-level BPE")
        normalizer = data.get("normalizer")
        if normalizer is not None:
            kind = normalizer.get("type") if isinstance(normalizer, dict) else normalizer
            raise DataError(f"{path}: normalizer {kind!r} is not supported (tiktoken has none)")
        added = data.get("added_tokens") or []
        if not isinstance(added, list) or not all(isinstance(t, dict) and isinstance(t.get("content"), str)
                                                  and isinstance(t.get("id"), int) for t in added):
            raise DataError(f"{path}: added_tokens must be a list of {{'id', 'content'}} objects")
        special = {t["content"]: t["id"] for t in added}
        return _build(model.get("vocab"), _parse_merges(model.get("merges"), path), special,
                      _pattern(data.get("pre_tokenizer"), path), path)
    vocab_path, merges_path = folder / GPT2_VOCAB_FILE, folder / GPT2_MERGES_FILE
    if not vocab_path.is_file() and not merges_path.is_file():
        raise DataError(f"{path}: file not found (nor {GPT2_VOCAB_FILE} + {GPT2_MERGES_FILE})")
    vocab = read_json_object(vocab_path, DataError)
    lines = read_text_file(merges_path, DataError).splitlines()
    merges = _parse_merges([line for line in lines if line and not line.startswith("#version")], merges_path)
    # GPT-2's own files list <|endoftext|> in vocab.json; a multi-character token no merge makes is special.
    made = {a + b for a, b in merges}
    special = {t: i for t, i in vocab.items() if len(t) > 1 and t not in made}
    return _build(vocab, merges, special, GPT2_PATTERN, vocab_path)


def encoding_name(folder: Path) -> str:
    """A plain file name for the encoding read from `folder` (its `.tiktoken` file is named after it)."""
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", folder.resolve().name).lstrip(".")
    return name or "bpe"
