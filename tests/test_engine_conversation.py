"""The headless conversation (chat pane and `workbench chat`): multi-turn cache reuse, regenerate, cancel,
vote, token view."""
from __future__ import annotations

import threading

import pytest
import torch

from engine_fakes import ByteTokenizer, tiny_model
from llm_core import Engine, WorkbenchError
from llm_core.engine import ChatOptions, Conversation


def conversation(eot_after: int | None = None) -> Conversation:
    """A tiny random model; with `eot_after`, the end-of-text id is the token greedy decoding writes at that
    position of the first answer, so turns end on end-of-text like a finetuned model's."""
    model = tiny_model(context_length=512, seed=4)
    tokenizer = ByteTokenizer()
    if eot_after is not None:
        probe = Conversation(Engine(model, tokenizer))
        first = probe.reply("hello", ChatOptions(max_new_tokens=eot_after + 1))
        tokenizer = type("StopAt", (ByteTokenizer,), {"eot_id": first.answer_ids[eot_after]})()
    return Conversation(Engine(model, tokenizer), name="tiny")


def test_second_turn_extends_the_first_and_reuses_the_cache() -> None:
    chat = conversation(eot_after=5)
    first = chat.reply("hello", ChatOptions(max_new_tokens=40))
    assert first.new_tokens == 5 and first.reused_tokens == 0
    history = chat.engine.conversation_ids
    second = chat.reply("and again", ChatOptions(max_new_tokens=10))
    assert second.reused_tokens == len(history) - 1  # all but the last token, whose logits are recomputed
    assert len(chat.turns) == 2


def test_token_probabilities_match_a_forward_pass_per_prefix() -> None:
    chat = conversation()
    turn = chat.reply("hi", ChatOptions(max_new_tokens=6))
    prompt = chat.engine.tokenizer.encode(chat.prompt_text("hi", "greedy"))
    seq = prompt + turn.answer_ids
    expected = []
    with torch.no_grad():
        for t in range(len(prompt), len(seq)):  # independent: one uncached forward per prefix
            probs = torch.softmax(chat.engine.model(torch.tensor([seq[:t]]))[0, -1].double(), dim=-1)
            expected.append(float(probs[seq[t]]))
    assert [p for _, p in turn.token_probs] == pytest.approx(expected, abs=1e-6)
    assert "".join(piece for piece, _ in turn.token_probs) == turn.answer


def test_regenerate_replaces_the_last_answer() -> None:
    chat = conversation()
    chat.reply("hi", ChatOptions(mode="sample", max_new_tokens=8, seed=1))
    first = chat.turns[-1].answer_ids
    again = chat.regenerate(ChatOptions(mode="sample", max_new_tokens=8, seed=1))
    assert len(chat.turns) == 1 and again.user == "hi" and again.answer_ids != first


def test_cancel_stops_generation_early() -> None:
    chat = conversation()
    cancel = threading.Event()
    turn = chat.reply("hi", ChatOptions(max_new_tokens=200), cancel, on_text=lambda piece: cancel.set())
    assert turn.cancelled and turn.new_tokens < 5
    assert chat.reply("next", ChatOptions(max_new_tokens=3)).new_tokens == 3  # the engine is still usable


def test_vote_keeps_tally_and_samples_and_markdown_export() -> None:
    chat = conversation()
    turn = chat.reply("2 + 3?", ChatOptions(mode="vote", n=4, max_new_tokens=6, seed=3))
    assert turn.vote is not None and 1 <= len(turn.vote.samples) <= 4 and turn.vote.n == 4
    assert sum(turn.vote.tally.values()) <= len(turn.vote.samples)
    text = chat.to_markdown()
    assert "2 + 3?" in text and "Votes (" in text and "tokens/s" in text


@pytest.mark.parametrize("options, needle", [(dict(mode="beams"), "mode"), (dict(temperature=-1.0), "temperature"),
                                             (dict(n=0), "n: must be")])
def test_bad_options_are_one_line_errors(options, needle) -> None:
    with pytest.raises(WorkbenchError, match=needle) as info:
        ChatOptions(**options)
    assert "\n" not in str(info.value)


def test_empty_message_and_regenerate_without_history_are_refused() -> None:
    chat = conversation()
    with pytest.raises(WorkbenchError, match="empty"):
        chat.reply("   ", ChatOptions())
    with pytest.raises(WorkbenchError, match="nothing to regenerate"):
        chat.regenerate(ChatOptions())


def test_vote_at_temperature_zero_is_greedy_not_replaced_by_a_default() -> None:
    """temperature 0 is a value, not "unset": every vote sample is the greedy answer."""
    chat = conversation()
    turn = chat.reply("2 + 3?", ChatOptions(mode="vote", n=3, temperature=0.0, max_new_tokens=6, seed=3,))
    greedy = conversation().reply("2 + 3?", ChatOptions(mode="cot", max_new_tokens=6))
    assert {s.text for s in turn.vote.samples} == {greedy.answer}
    assert ChatOptions(mode="sample", temperature=0.0).decoding_temperature == 0.0
    assert ChatOptions(mode="cot", temperature=0.9).decoding_temperature == 0.0


def test_chat_cli_and_tui_share_one_conversation_and_modes() -> None:
    import llm_core
    from llm_core.engine import MODES
    from workbench.commands import chat as chat_cmd
    from workbench.tui.widgets import chat as chat_widget

    assert chat_cmd.Conversation is chat_widget.Conversation is llm_core.Conversation
    assert chat_cmd.MODES is chat_widget.MODES is MODES


def test_beam_mode_keeps_every_beam_and_width_one_is_cot() -> None:
    chat = conversation()
    turn = chat.reply("2 + 3?", ChatOptions(mode="beam", width=3, max_new_tokens=6))
    assert turn.beams is not None and len(turn.beams.beams) == 3
    assert turn.new_tokens == turn.beams.tokens and turn.answer
    one = conversation().reply("2 + 3?", ChatOptions(mode="beam", width=1, max_new_tokens=6))
    cot = conversation().reply("2 + 3?", ChatOptions(mode="cot", max_new_tokens=6))
    assert one.answer == cot.answer


def test_beam_width_zero_is_a_one_line_error() -> None:
    with pytest.raises(WorkbenchError, match="^width: must be an integer >= 1, got 0$"):
        ChatOptions(mode="beam", width=0)


def test_best_mode_keeps_the_highest_scoring_sample_and_lists_every_score(monkeypatch) -> None:
    """Best-of-N in chat: the kept answer is the sample the scorer ranks first, every score is kept."""
    import llm_core.search.select as select

    chat = conversation()
    # A scorer written out here: longer samples score higher, so the kept one is the longest (first of equals).
    monkeypatch.setattr(select, "verifier_score", lambda question, completion: float(len(completion)))
    turn = chat.reply("2 + 3?", ChatOptions(mode="best", n=5, max_new_tokens=8, seed=2))
    texts = [s.text for s in turn.scored.samples]
    assert len(texts) == 5 and turn.scored.scores == [float(len(t)) for t in texts]
    longest = max(range(5), key=lambda i: (len(texts[i]), -i))
    assert turn.answer == texts[longest] and turn.final == turn.scored.samples[longest].answer
    assert turn.new_tokens == turn.scored.tokens > 0
    assert "Scored samples (5" in chat.to_markdown()


def test_best_mode_with_an_unknown_scorer_is_a_one_line_error() -> None:
    with pytest.raises(WorkbenchError, match="^scorer: must be 'verifier' or 'model:PATH', got 'oracle'$"):
        ChatOptions(mode="best", scorer="oracle")


def test_a_failed_reply_leaves_the_conversation_as_it_was(monkeypatch) -> None:
    """A reply that raises keeps no turn and no history entry: the next regenerate rewinds the right turn."""
    chat = conversation()
    chat.reply("first", ChatOptions(max_new_tokens=4))
    history, histories = list(chat._history), [list(h) for h in chat._histories]

    def broken(*args, **kwargs):
        raise RuntimeError("decoder failed")

    monkeypatch.setattr(chat.engine, "stream_ids", broken)
    with pytest.raises(RuntimeError, match="decoder failed"):
        chat.reply("second", ChatOptions(max_new_tokens=4))
    assert chat._history == history and chat._histories == histories and len(chat.turns) == 1
    monkeypatch.undo()
    again = chat.regenerate(ChatOptions(max_new_tokens=4))
    assert again.user == "first" and len(chat.turns) == 1 and chat._histories == [[]]
