"""`workbench chat`: line-based chat through stdin/stdout, a loop over `llm_core.Conversation.reply`.

One prompt per input line; blank lines are skipped; each line is a new single-turn conversation. Modes
(defined in `llm_core.engine.conversation`): greedy, sample, cot (chain of thought: reasoning and extracted
answer shown separately), vote (majority vote over N chain-of-thought samples), beam (beam search of
--width beams over the chain of thought, every final beam listed), best (the highest-scoring of --n
sampled chains of thought, every sample's score listed). A prompt longer than the
model's context is left-truncated (chat opts in) and a note says so. `--adapters DIR` puts a PEFT LoRA/DoRA
adapter folder (`workbench export --adapters`, or one peft wrote) onto the checkpoint first.

Input is read as bytes and decoded as UTF-8 with replacement, and output replaces what the terminal's
encoding cannot show: under a strict locale (LC_ALL=C, PYTHONIOENCODING=ascii) a stray byte on stdin or a
non-ASCII answer would otherwise end the session with a UnicodeError traceback.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import IO, Iterator, Literal, Optional

import typer

from llm_core.adapters import load_peft_adapters
from llm_core.engine import MODES, ChatOptions, Conversation, Engine, Turn
from llm_core.engine.reasoning import VoteResult
from llm_core.errors import DataError, GenerationError
from llm_core.training import load_checkpoint

from .options import checkpoint_option

_load = load_checkpoint  # the tests replace it with a tiny in-memory checkpoint
ChatMode = Literal[MODES]  # type: ignore[valid-type]  # the engine's modes, listed by --help


def _input_lines(stream: IO[str]) -> Iterator[str]:
    """Lines of `stream`, decoded from its bytes as UTF-8 (invalid bytes become U+FFFD), whatever the locale."""
    buffer = getattr(stream, "buffer", None)
    if buffer is None:  # a text-only stream (already decoded)
        yield from iter(stream.readline, "")
        return
    for raw in iter(buffer.readline, b""):
        yield raw.decode("utf-8", errors="replace")


def _tolerant_output() -> None:
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(errors="replace")


def _format_tally(result: VoteResult) -> str:
    votes = ", ".join(f"{a} x{c}" for a, c in result.tally.items()) or "none"
    winner = f"tie between {', '.join(map(str, result.tied))}" if result.tie else str(result.answer)
    done = len(result.samples)
    return (
        f"answer: {winner}\nvotes: {votes} | no answer: {result.no_answer_share:.0%} of {done} | "
        f"saved by early stop: {result.saved} of {result.n}"
    )


def _format_beams(turn: Turn, tokenizer) -> str:
    lines = [f"beams ({len(turn.beams.beams)}, {turn.new_tokens} tokens decoded):"]
    for i, beam in enumerate(turn.beams.beams):
        last = tokenizer.decode_bytes(beam.ids).decode("utf-8", errors="replace").strip().splitlines()
        lines.append(f"  {i + 1}. log p {beam.logprob:.2f}{'' if beam.stopped else ' (cut at the budget)'}: "
                     f"{last[-1] if last else '(empty)'}")
    return "\n".join(lines)


def _format_scored(turn: Turn) -> str:
    scored = turn.scored
    lines = [f"scored samples ({len(scored.samples)}, {turn.new_tokens} tokens decoded), best first:"]
    order = sorted(range(len(scored.samples)), key=lambda i: (-scored.scores[i], i))
    for i in order:
        s = scored.samples[i]
        lines.append(f"  sample {s.index}: score {scored.scores[i]:.2f}, answer {s.answer}"
                     + ("  <- kept" if s is scored.best else ""))
    return "\n".join(lines)


def _chat_line(chat: Conversation, line: str, options: ChatOptions) -> None:
    ctx = chat.engine.context_length
    n_tokens = len(chat.engine.tokenizer.encode(chat.prompt_text(line, options.mode)))
    if n_tokens > ctx:
        typer.echo(f"note: prompt is {n_tokens} tokens, longer than the context {ctx}; keeping the last {ctx}")
    streaming = options.mode in ("greedy", "sample")

    def write(piece: str) -> None:
        sys.stdout.write(piece)
        sys.stdout.flush()

    turn: Turn = chat.reply(line, options, on_text=write if streaming else None)
    if options.mode == "vote":
        typer.echo(_format_tally(turn.vote))
    elif options.mode == "beam":
        typer.echo(f"answer: {turn.final if turn.final is not None else '(no answer found)'}")
        typer.echo(_format_beams(turn, chat.engine.tokenizer))
    elif options.mode == "best":
        typer.echo(f"answer: {turn.final if turn.final is not None else '(no answer found)'}")
        typer.echo(f"reasoning (the kept sample):\n{turn.reasoning or '(none)'}")
        typer.echo(_format_scored(turn))
    elif options.mode == "cot":
        typer.echo(f"reasoning:\n{turn.reasoning or '(none)'}")
        typer.echo(f"answer: {turn.final if turn.final is not None else '(no answer found)'}")
    else:
        sys.stdout.write("\n")


def chat(
    checkpoint: Path = checkpoint_option(),
    adapters: Optional[Path] = typer.Option(None, "--adapters", help="A PEFT LoRA/DoRA adapter folder to apply."),
    mode: ChatMode = typer.Option("greedy", "--mode", help="greedy / sample stream the answer; cot shows the reasoning "
                                  "and the answer; vote: majority of --n samples; beam: --width beams; best: the "
                                  "highest-scoring of --n samples (--scorer)."),
    n: int = typer.Option(8, "--n", help="Samples for --mode vote and --mode best."),
    width: int = typer.Option(4, "--width", help="Beams for --mode beam."),
    scorer: str = typer.Option("verifier", "--scorer", help="For --mode best: 'verifier' (the default experiment's "
                               "step checker) or 'model:PATH' (a reward model from `workbench reward-model`)."),
    temperature: float = typer.Option(0.8, "--temperature", help="For sample, vote and best (0 = greedy)."),
    top_k: int = typer.Option(None, "--top-k", help="Keep the k most likely tokens (clamped to the vocabulary)."),
    top_p: float = typer.Option(None, "--top-p", help="Nucleus sampling: keep tokens up to this mass, in (0, 1]."),
    max_new_tokens: int = typer.Option(256, "--max-new-tokens", help="Tokens to generate per answer."),
    seed: int = typer.Option(0, "--seed", help="Seed for sampling (sample i of a vote uses a seed derived from it)."),
) -> None:
    """Chat line by line: one prompt per stdin line (blank lines skipped); scriptable with a pipe."""
    if n < 1:
        raise GenerationError(f"--n: must be >= 1, got {n}")
    if max_new_tokens < 1:
        raise GenerationError(f"--max-new-tokens: must be >= 1, got {max_new_tokens}")
    options = ChatOptions(mode=mode, temperature=temperature, top_k=top_k, top_p=top_p, n=n, width=width,
                          scorer=scorer, max_new_tokens=max_new_tokens, seed=seed)  # validated before the checkpoint loads
    loaded = _load(checkpoint)
    if adapters is not None:
        load_peft_adapters(loaded.model, adapters).eval()
    engine = Engine(loaded.model, loaded.tokenizer)
    # The engine's own left truncation (the last context-length tokens), no per-token view: a plain pipe.
    chat = Conversation(engine, leave_room=False, token_view=False)
    interactive = sys.stdin.isatty()
    _tolerant_output()
    if interactive:
        extra = f" + adapters {adapters}" if adapters is not None else ""
        typer.echo(f"{loaded.path} (step {loaded.step}){extra}, mode {mode}; Ctrl-D to quit")
    lines = _input_lines(sys.stdin)
    while True:
        if interactive:
            sys.stdout.write("> ")
            sys.stdout.flush()
        line = next(lines, "")
        if not line:
            break
        line = line.strip()
        if not line:
            continue
        try:
            _chat_line(chat, line, options)
        except (GenerationError, DataError) as exc:  # one bad line does not end a scripted session
            typer.secho(f"error: {exc}", fg="red", err=True)
        chat.reset()  # each line is a new single-turn conversation


def register(app: typer.Typer) -> None:
    app.command("chat")(chat)
