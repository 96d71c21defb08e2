"""Issue 16: the TUI reads run folders, metrics and checkpoint hashes in workers, and survives errors there.

Each test holds a reader on a threading.Event and checks that a key is handled meanwhile (the UI thread is
free), that "loading" shows, and that a result the user no longer waits for is dropped. Not timed: the
latencies are measured by benchmarks/tui_responsiveness.py."""
from __future__ import annotations

import threading
from pathlib import Path

from textual.widgets import DataTable, OptionList

import workbench.tui.widgets.checkpoint_picker as picker_module
import workbench.tui.widgets.runs_list as runs_list_module
from engine_fakes import ByteTokenizer, tiny_model
from llm_core.engine import Conversation, Engine
from training_helpers import tiny_config
from tui_helpers import run_shown, runs_listed, trained_run, until
from workbench.plotting import RunSeries
from workbench.tui.follow import MetricsFollower
from workbench.tui.widgets.chat import ChatColumn
from workbench.tui.widgets.checkpoint_picker import CheckpointPicker

SIZE = (110, 34)


def gate() -> threading.Event:
    return threading.Event()


def text_of(app, selector: str) -> str:
    return str(app.query_one(selector).render())


def select_row(app, name: str) -> None:
    table = app.query_one("#runs-table", DataTable)
    table.move_cursor(row=[i for i in range(table.row_count) if table.get_row_at(i)[0] == name][0])


async def test_runs_are_read_in_a_worker_and_an_older_reading_is_dropped(tmp_path, monkeypatch) -> None:
    trained_run(tmp_path, "first")
    release, calls = gate(), []
    real = runs_list_module.list_runs

    def first_reading_held(root):
        runs = real(root)  # what the folder holds now ...
        calls.append(len(runs))
        if len(calls) == 1:
            release.wait(30)  # ... returned late, after a newer reading
        return runs

    monkeypatch.setattr(runs_list_module, "list_runs", first_reading_held)
    app = make_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("3")
        runs = app.query_one("#runs-list")
        real_post, posted = runs.post_message, []  # the readings whose result reached the list, stale ones too
        monkeypatch.setattr(runs, "post_message", lambda m: (real_post(m), posted.append(getattr(m, "number", None)))[0])
        assert runs.reading and text_of(app, "#runs-title").startswith("reading")
        await pilot.press("1")  # handled while the reader is held: the UI thread is free
        assert app.panel == "run"
        await pilot.press("3")
        await until(pilot, lambda: calls == [1], "the first reading under way")
        trained_run(tmp_path, "second", seed=3)
        await pilot.press("r")  # a newer reading: it sees both runs and is shown
        await runs_listed(pilot)
        table = app.query_one("#runs-table", DataTable)
        assert table.row_count == 2 and text_of(app, "#runs-title").startswith("runs in")
        release.set()  # the first reading (one run) comes back now: stale, dropped
        await app.workers.wait_for_complete()  # (not its thread: a newer reading cancelled its worker)
        await until(pilot, lambda: 1 in posted, "the stale result posted")
        await pilot.pause()  # ... and handled: the list's queue is processed up to it
        assert table.row_count == 2 and not runs.reading


def make_app(tmp_path):
    from workbench.tui.app import make_app as make

    return make(tmp_path / "runs", tiny_config(tmp_path))


async def test_a_run_is_read_in_a_worker_and_a_read_the_user_left_is_dropped(tmp_path, monkeypatch) -> None:
    trained_run(tmp_path, "slow")
    trained_run(tmp_path, "quick", seed=3)
    release = gate()
    real = RunSeries.from_run.__func__

    def held(cls, path):
        if Path(path).name == "slow":
            release.wait(30)
        return real(cls, path)

    monkeypatch.setattr(RunSeries, "from_run", classmethod(held))
    app = make_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("3")
        await runs_listed(pilot)
        select_row(app, "slow")
        await pilot.press("enter")
        dash = app.query_one("#dash")
        real_post, posted, slow_request = dash.post_message, [], dash.request
        monkeypatch.setattr(dash, "post_message", lambda m: (real_post(m), posted.append(getattr(m, "request", None)))[0])
        assert app.panel == "dashboard" and dash.reading == "slow" and dash.run is None
        assert text_of(app, "#status").startswith("slow (loading") and app.query_one("#loading-text").display
        await pilot.press("3")  # a key handled while the run is being read
        assert app.panel == "runs"
        select_row(app, "quick")
        await pilot.press("enter")  # the user moved on
        await run_shown(pilot)
        assert dash.run.name == "quick" and dash.run.steps
        release.set()
        await app.workers.wait_for_complete()  # (not its thread: the quick read cancelled its worker)
        await until(pilot, lambda: slow_request in posted, "the stale read posted")
        await pilot.pause()  # ... and handled: the dashboard's queue is processed up to it
        assert dash.run.name == "quick" and text_of(app, "#status").startswith("quick")  # slow: dropped


async def test_attaching_reads_the_history_in_a_worker(tmp_path, monkeypatch) -> None:
    trained_run(tmp_path, "other")
    release = gate()
    real = MetricsFollower.poll

    def held(self):
        release.wait(30)
        return real(self)

    monkeypatch.setattr(MetricsFollower, "poll", held)
    app = make_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("3")
        await runs_listed(pilot)
        await pilot.press("a")
        dash = app.query_one("#dash")
        assert dash.reading == "other" and app.followed is None
        await pilot.press("1")  # handled while the history is being read
        assert app.panel == "run"
        release.set()
        await until(pilot, lambda: app.followed is not None and len(app.followed.steps) == 6, "attached")
        assert dash.run is app.followed and "attached" in text_of(app, "#status")


async def test_checkpoints_are_listed_at_once_and_verified_in_the_background(tmp_path, monkeypatch) -> None:
    run = trained_run(tmp_path, "multi", checkpoint_every=2, keep_last=3)  # step-2, step-4, step-6
    weights = run / "checkpoints" / "step-00000004" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF  # same size, another hash
    weights.write_bytes(bytes(data))
    release, verified = gate(), []
    real = picker_module.read_manifest

    def held(path, verify=True):
        if verify:
            release.wait(30)
            verified.append(Path(path).name)
        return real(path, verify)

    monkeypatch.setattr(picker_module, "read_manifest", held)
    app = make_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("3")
        await runs_listed(pilot)
        await pilot.press("c")
        picker = app.screen
        assert isinstance(picker, CheckpointPicker) and picker.pending == 3
        options = picker.query_one(OptionList)

        def labels():
            return [str(options.get_option_at_index(i).prompt) for i in range(options.option_count)]

        assert labels() == ["step 6  (latest)  verifying ...", "step 4  verifying ...", "step 2  verifying ..."]
        assert not any(options.get_option_at_index(i).disabled for i in range(3))
        assert "verifying the files of 3" in text_of(picker, "#picker-title")
        await pilot.press("down")  # the picker answers keys while the files are hashed
        assert options.highlighted == 1
        release.set()
        await until(pilot, lambda: picker.pending == 0, "every checkpoint verified")
        assert verified == ["step-00000006", "step-00000004", "step-00000002"]  # newest first
        assert labels()[0] == "step 6  (latest)  verified" and labels()[2] == "step 2  verified"
        assert labels()[1].startswith("step 4  broken:") and "SHA-256 mismatch" in labels()[1]
        assert options.get_option_at_index(1).disabled and "verifying" not in text_of(picker, "#picker-title")


async def test_an_exception_in_generation_is_shown_in_the_chat_and_the_chat_goes_on(tmp_path) -> None:
    model = tiny_model(context_length=64)
    conversation = Conversation(Engine(model, ByteTokenizer()), name="fragile")
    app = make_app(tmp_path)
    notices: list[str] = []
    async with app.run_test(size=SIZE) as pilot:
        real_notify = app.notify
        app.notify = lambda message, **kw: (notices.append(str(message)), real_notify(message, **kw))[1]
        await pilot.press("4")
        column = app.query_one("#chat-a", ChatColumn)
        column.conversation = conversation

        def broken(*args, **kwargs):
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")

        engine = conversation.engine
        engine._forward = broken  # what torch raises mid-generation (the engine's step, not GPT.forward)
        await pilot.press(*"hi", "enter")
        await until(pilot, lambda: not column.busy and bool(column.query(".error")), "the error shown")
        shown = str(column.query(".error").last().render())
        assert shown == "error: RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB"
        assert any("CUDA out of memory" in n for n in notices) and app.is_running
        assert len(conversation.turns) == 0  # the failed turn left nothing behind
        del engine._forward  # the model works again: the same conversation answers
        await pilot.press(*"hi", "enter")
        await until(pilot, lambda: not column.busy and len(conversation.turns) == 1, "an answer")
        assert conversation.turns[0].new_tokens > 0 and app.is_running


async def test_a_checkpoint_that_fails_to_load_is_an_error_in_the_chat(tmp_path, monkeypatch) -> None:
    import workbench.tui.widgets.chat as chat_module

    run = trained_run(tmp_path, "base")

    def raises(path):
        raise RuntimeError("size mismatch for tok_emb.weight")

    monkeypatch.setattr(chat_module, "load_checkpoint", raises)
    app = make_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        app.query_one("#chat").open_checkpoint(run)
        column = app.query_one("#chat-a", ChatColumn)
        await until(pilot, lambda: "cannot open" in str(column.query_one(".chat-title").render()), "the error")
        assert "RuntimeError: size mismatch for tok_emb.weight" in str(column.query_one(".chat-title").render())
        assert column.conversation is None and app.is_running
