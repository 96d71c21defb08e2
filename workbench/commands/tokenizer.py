"""`workbench tokenizer ...`: train a byte-level BPE on text files, inspect how text is tokenized."""
from __future__ import annotations

from pathlib import Path

import typer

from llm_core.bpe import DEFAULT_PATTERN, EOT_TOKEN, save_bpe, train_bpe
from llm_core.errors import DataError
from llm_core.io import read_text_file
from llm_core.tokenizer import load_tokenizer

tokenizer_app = typer.Typer(help="Train and inspect tokenizers.", no_args_is_help=True)


def _read_texts(files: list[Path]) -> list[str]:
    texts = [read_text_file(path, DataError) for path in files]
    if not any(t.strip() for t in texts):
        raise DataError(f"{', '.join(map(str, files))}: no text to train on (empty input)")
    return texts


@tokenizer_app.command("train")
def train(
    files: list[Path] = typer.Argument(..., help="UTF-8 text files to learn merges from."),
    vocab_size: int = typer.Option(..., "--vocab-size", help="Total vocabulary incl. <|endoftext|> (>= 257)."),
    out: Path = typer.Option(..., "--out", help="Folder for <name>.tiktoken and workbench_tokenizer.json."),
    name: str = typer.Option("bpe", "--name", help="Tokenizer name (also the vocabulary file name)."),
) -> None:
    """Train a byte-level BPE (every digit its own token) and save it in tiktoken's format."""
    texts = _read_texts(files)
    ranks = train_bpe(texts, vocab_size)
    save_bpe(ranks, out, DEFAULT_PATTERN, (EOT_TOKEN,), name)
    tok = load_tokenizer(out)
    n_bytes = sum(len(t.encode("utf-8")) for t in texts)
    n_tokens = sum(len(tok.encode(t)) for t in texts)
    typer.echo(f"saved tokenizer {name!r} to {out}: vocab size {tok.n_vocab} ({len(ranks) - 256} merges)")
    typer.echo(f"compression on the input: {n_bytes / max(n_tokens, 1):.2f} bytes/token "
               f"({n_bytes:,} bytes -> {n_tokens:,} tokens)")


@tokenizer_app.command("encode")
def encode(
    text: str = typer.Argument(..., help="Text to tokenize."),
    tokenizer: str = typer.Option("gpt2", "--tokenizer", "-t", help='"gpt2" or a tokenizer folder.'),
) -> None:
    """Show the token ids and the piece of text each one stands for."""
    tok = load_tokenizer(tokenizer)
    ids = tok.encode(text)
    typer.echo(f"{len(ids)} tokens ({tok.name}, vocab {tok.n_vocab}): {ids}")
    typer.echo(" | ".join(repr(tok.token_bytes(i).decode("utf-8", errors="replace")) for i in ids))


def register(app: typer.Typer) -> None:
    app.add_typer(tokenizer_app, name="tokenizer")
