"""Tokenizers: GPT-2's byte-level BPE or a project BPE, both run by tiktoken.

A `Tokenizer` wraps a `tiktoken.Encoding` and adds the policy the rest of llm_core relies on:
- `encode` treats ALL input as ordinary text. A user message or dataset record containing the string
  "<|endoftext|>" gets the ordinary tokens of those characters, never the control token, so data can't
  forge document boundaries (a prompt-injection vector). Control tokens are only ever inserted by id, by
  `llm_core.formatting`, via `tokenizer.eot_id`.
- text that is not valid Unicode (lone surrogates, e.g. from a bad JSON escape) is repaired, not fatal.
- ids are range-checked before decoding.

`load_tokenizer("gpt2")` is the GPT-2 vocabulary (Radford et al., 2019); `load_tokenizer(folder)` loads a
BPE trained by `llm_core.bpe` (or a folder written by `save_tokenizer_ref`), or the byte-level BPE of a
Hugging Face folder (`tokenizer.json`, or GPT-2's `vocab.json` + `merges.txt`, see `llm_core.hf_tokenizer`);
a Hugging Face copy of GPT-2's vocabulary becomes the builtin "gpt2".
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable

import tiktoken

from .bpe import (BPE_FORMAT, EOT_TOKEN, LEGACY_TOKENIZER_JSON, TOKENIZER_JSON, read_ranks, remove_legacy_meta,
                  save_bpe)
from .errors import ConfigError, DataError
from .hf_tokenizer import GPT2_PATTERN, encoding_name, is_hf_tokenizer_folder, read_hf_tokenizer
from .io import read_json_object

BUILTIN_TOKENIZERS = ("gpt2",)


class Tokenizer:
    """A tiktoken encoding plus safe encode/decode. `builtin` names a tiktoken encoding (e.g. "gpt2")."""

    def __init__(self, encoding: tiktoken.Encoding, builtin: str | None = None) -> None:
        if EOT_TOKEN not in encoding._special_tokens:
            raise ConfigError(f"tokenizer {encoding.name!r}: has no {EOT_TOKEN!r} special token")
        self.encoding = encoding
        self.builtin = builtin

    @property
    def name(self) -> str:
        return self.encoding.name

    @property
    def n_vocab(self) -> int:
        return self.encoding.n_vocab

    @property
    def eot_id(self) -> int:
        """Id of the end-of-text control token (document separator, end of every response)."""
        return self.encoding._special_tokens[EOT_TOKEN]

    @property
    def special_tokens(self) -> dict[str, int]:
        return dict(self.encoding._special_tokens)

    def encode(self, text: str) -> list[int]:
        """Ordinary-text ids: special-token strings in `text` are plain characters, never control tokens."""
        if not isinstance(text, str):
            raise DataError(f"tokenizer {self.name!r}: can only encode str, got {type(text).__name__}")
        return self.encoding.encode_ordinary(repair_text(text))

    def encode_batch(self, texts: Iterable[str]) -> list[list[int]]:
        return [self.encode(t) for t in texts]

    def _check_ids(self, ids: Iterable[int]) -> list[int]:
        ids = list(ids)
        n = self.n_vocab
        for i in ids:
            if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < n:
                raise DataError(f"token id {i!r} is out of range for tokenizer {self.name!r} (0..{n - 1})")
        return ids

    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        return self.encoding.decode_bytes(self._check_ids(ids))

    def decode(self, ids: Iterable[int]) -> str:
        """Text of `ids`; byte sequences that are not valid UTF-8 (a split character) become U+FFFD."""
        return self.decode_bytes(ids).decode("utf-8", errors="replace")

    def token_bytes(self, token_id: int) -> bytes:
        """The bytes of one token (a token can be part of a multi-byte character)."""
        (token_id,) = self._check_ids([token_id])
        return self.encoding.decode_single_token_bytes(token_id)

    def __repr__(self) -> str:
        return f"Tokenizer(name={self.name!r}, n_vocab={self.n_vocab}, eot_id={self.eot_id})"


def repair_text(text: str) -> str:
    """Make `text` encodable as UTF-8: join surrogate pairs written as two code units, replace lone ones.

    Round-tripping through UTF-16 with "surrogatepass" turns "\\ud83d\\ude42" into the emoji it spells;
    "replace" turns an unpaired surrogate into U+FFFD.
    """
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def _load_builtin(name: str) -> Tokenizer:
    try:
        encoding = tiktoken.get_encoding(name)
    except Exception as exc:  # network / cache failures come as many types (requests, OSError, ValueError)
        raise ConfigError(
            f"could not load the {name!r} BPE files ({type(exc).__name__}); offline, set TIKTOKEN_CACHE_DIR "
            f"to a folder holding tiktoken's cached {name} files"
        ) from None
    return Tokenizer(encoding, builtin=name)


def _project_meta(folder: Path) -> tuple[Path, dict] | None:
    """The workbench tokenizer file of `folder` and its contents: `workbench_tokenizer.json`, or the
    `tokenizer.json` of a folder written before the rename (told apart from Hugging Face's by its keys)."""
    path = folder / TOKENIZER_JSON
    if path.is_file():
        return path, read_json_object(path, DataError)
    legacy = folder / LEGACY_TOKENIZER_JSON
    if legacy.is_file():
        meta = read_json_object(legacy, DataError)
        if meta.get("format") == BPE_FORMAT or "builtin" in meta:
            return legacy, meta
    return None


def _encoding(path: Path, name: str, pattern: str, ranks: dict[bytes, int], special: dict[str, int]) -> Tokenizer:
    if EOT_TOKEN not in special:
        raise DataError(f"{path}: special_tokens must include {EOT_TOKEN!r}")
    try:
        encoding = tiktoken.Encoding(name=name, pat_str=pattern, mergeable_ranks=ranks, special_tokens=special)
    except Exception as exc:  # e.g. a pattern the Rust regex engine rejects
        raise DataError(f"{path}: cannot build the encoding ({exc})") from None
    return Tokenizer(encoding)


def _load_hf_folder(folder: Path) -> Tokenizer:
    bpe = read_hf_tokenizer(folder)
    if len(bpe.ranks) == 50256 and bpe.special_tokens == {EOT_TOKEN: 50256}:  # cheap test first: GPT-2's shape
        try:
            gpt2 = _load_builtin("gpt2")
        except ConfigError:
            gpt2 = None  # no cached GPT-2 files to compare with: keep the folder's own copy
        if gpt2 is not None and bpe.pattern in (GPT2_PATTERN, gpt2.encoding._pat_str) \
                and bpe.ranks == gpt2.encoding._mergeable_ranks:
            return gpt2
    return _encoding(bpe.source, encoding_name(folder), bpe.pattern, bpe.ranks, bpe.special_tokens)


def _load_folder(folder: Path) -> Tokenizer:
    found = _project_meta(folder)
    if found is None:
        if is_hf_tokenizer_folder(folder):
            return _load_hf_folder(folder)
        raise ConfigError(f"{folder}: not a tokenizer folder (no {TOKENIZER_JSON}, nor a Hugging Face "
                          f"tokenizer.json or vocab.json + merges.txt)")
    meta_path, meta = found
    if "builtin" in meta:  # a reference written by save_tokenizer_ref, e.g. {"builtin": "gpt2"}
        if meta["builtin"] not in BUILTIN_TOKENIZERS:
            raise DataError(f"{meta_path}: unknown builtin tokenizer {meta['builtin']!r}")
        return _load_builtin(meta["builtin"])
    for key, tp in (("name", str), ("pattern", str), ("vocab_file", str), ("special_tokens", dict)):
        if not isinstance(meta.get(key), tp):
            raise DataError(f"{meta_path}: field {key!r} is missing or not a {tp.__name__}")
    vocab_file = Path(meta["vocab_file"])
    if vocab_file.is_absolute() or ".." in vocab_file.parts:
        raise DataError(f"{meta_path}: vocab_file {meta['vocab_file']!r} must be a file inside the folder")
    ranks = read_ranks(folder / vocab_file)
    special = meta["special_tokens"]
    if sorted(special.values()) != list(range(len(ranks), len(ranks) + len(special))):
        raise DataError(f"{meta_path}: special token ids must follow the {len(ranks)} ranks, got {special}")
    return _encoding(meta_path, meta["name"], meta["pattern"], ranks, special)


def load_tokenizer(spec: str | Path) -> Tokenizer:
    """`"gpt2"` (tiktoken's GPT-2 BPE, cached offline via TIKTOKEN_CACHE_DIR), a tokenizer folder, or a
    Hugging Face folder with a byte-level BPE."""
    if isinstance(spec, str) and spec in BUILTIN_TOKENIZERS:
        return _load_builtin(spec)
    path = Path(spec)
    if path.is_dir():
        return _load_folder(path)
    raise ConfigError(
        f"tokenizer {str(spec)!r}: not one of {', '.join(BUILTIN_TOKENIZERS)} nor a folder with {TOKENIZER_JSON}"
    )


def save_tokenizer_ref(tokenizer: Tokenizer, folder: str | Path) -> Path:
    """Write what `load_tokenizer(folder)` needs: the BPE files, or a small json naming the builtin."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if tokenizer.builtin is not None:
        (folder / TOKENIZER_JSON).write_text(json.dumps({"builtin": tokenizer.builtin}, indent=2) + "\n")
        remove_legacy_meta(folder)
        return folder
    enc = tokenizer.encoding
    specials = sorted(enc._special_tokens, key=enc._special_tokens.__getitem__)
    return save_bpe(enc._mergeable_ranks, folder, enc._pat_str, specials, enc.name)
