"""The workbench app driven by keys through Textual's Pilot: training control, panels, runs, chat."""
from __future__ import annotations

import asyncio
import json

from textual import events
from textual.widgets import Collapsible, DataTable, Input, OptionList, Select, Switch

from training_helpers import tiny_config
from tui_helpers import run_shown, runs_listed, trained_run, until
from workbench.plotting import RunSeries
from workbench.tui.app import make_app
from workbench.tui.commands import WorkbenchCommands
from workbench.tui.widgets.chat import ChatColumn, ChatPane
from workbench.tui.widgets.checkpoint_picker import CheckpointPicker
from workbench.tui.widgets.confirm import Confirm
from workbench.tui.widgets.plot import MetricPlot
from workbench.tui.widgets.runs_list import RunsList

SIZE = (110, 34)


def long_run(tmp_path):
    return tiny_config(tmp_path, max_steps=100_000, eval_every=50, checkpoint_every=100_000, name="live")


async def test_start_plots_pause_resume_stop_writes_checkpoint(tmp_path) -> None:
    app = make_app(tmp_path / "runs", long_run(tmp_path))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("1", "ctrl+s")
        assert app.panel == "dashboard"
        await until(pilot, lambda: app.live is not None and len(app.live.steps) >= 5, "steps in the plots")
        plots = list(app.query(MetricPlot))
        # The plots are redrawn one per tick, in turn: within a second each has the run's points.
        await until(pilot, lambda: all(p.points > 0 for p in plots), "points drawn in every plot")
        await pilot.press("p")
        assert await asyncio.to_thread(app.session.trainer.wait_for_state, "paused", timeout=30)
        paused_at = app.session.trainer.step
        await pilot.press("p")
        assert await asyncio.to_thread(app.session.trainer.wait_for_state, "running", timeout=30)
        await pilot.press("x")
        await until(pilot, lambda: isinstance(app.screen, Confirm), "the stop confirmation")
        assert isinstance(app.screen, Confirm) and app.session.active  # stopping asks first
        await pilot.press("enter")
        # A cancelled thread worker's task ends at once, its thread does not (wait_for_complete does not wait
        # for it): wait for the trainer to finish its step and checkpoint.
        await until(pilot, lambda: app.train_worker.is_finished and not app.session.active, "the run stopped")
        assert app.train_worker.state.name == "CANCELLED"
        trainer = app.session.trainer
        assert trainer.state == "finished" and trainer.step >= paused_at
        step_dirs = list((trainer.run_dir / "checkpoints").glob("step-*"))
        assert [d.name for d in step_dirs] == [f"step-{trainer.step:08d}"]
        assert plots  # the dashboard's plots existed throughout
        # The runs list is read again once the thread has checkpointed and let go of the run (no `r` pressed):
        # read when the worker turned CANCELLED, it showed the run as still running.
        runs = app.query_one("#runs-list")
        await until(pilot, lambda: not runs.reading and [r.status for r in runs.runs] == ["stopped"],
                    "the stopped run listed as stopped")
        assert runs.runs[0].checkpoints


async def test_keys_are_answered_while_training_and_hidden_plots_are_not_drawn(tmp_path) -> None:
    app = make_app(tmp_path / "runs", long_run(tmp_path))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("1", "ctrl+s")
        await until(pilot, lambda: app.live is not None and len(app.live.steps) >= 3, "training")
        await pilot.press("1")
        assert app.panel == "run"  # handled while the trainer runs on its thread
        draws = app.query_one("#plot-loss", MetricPlot).draws
        seen = app.events_seen
        await until(pilot, lambda: app.events_seen > seen + 20, "more training events")
        assert app.query_one("#plot-loss", MetricPlot).draws == draws  # hidden: not redrawn
        await pilot.press("2")
        await until(pilot, lambda: app.query_one("#plot-loss", MetricPlot).draws > draws, "redrawn when shown")
        await pilot.press("x")
        await until(pilot, lambda: isinstance(app.screen, Confirm), "the stop confirmation")
        await pilot.press("enter")
        await until(pilot, lambda: not app.session.active, "the run stopped")


async def test_invalid_field_is_refused_inline_and_start_is_refused(tmp_path) -> None:
    app = make_app(tmp_path / "runs", tiny_config(tmp_path))
    async with app.run_test(size=SIZE) as pilot:
        form = app.query_one("#form")
        app.query_one("#f-peak_lr", Input).value = "-1"
        await pilot.pause()
        assert "must be >= 0, got -1" in str(app.query_one("#e-peak_lr").render())
        app.query_one("#f-max_steps", Input).value = "ten"
        await pilot.pause()
        assert "not an integer" in str(app.query_one("#e-max_steps").render())
        app.query_one("#f-max_steps", Input).focus()
        await pilot.press("ctrl+s")  # start works from inside a field (a modifier key), but not on errors
        assert app.session is None and form.config is None
        app.query_one("#f-peak_lr", Input).value = "0.003"
        app.query_one("#f-max_steps", Input).value = "10"
        await pilot.pause()
        assert form.config is not None and form.config.max_steps == 10
        assert app.query_one("#lr-preview", MetricPlot).spec.series[0].xs[-1] == 9  # the plan redrawn


async def test_stage_choice_fills_in_its_recipe(tmp_path) -> None:
    app = make_app(tmp_path / "runs", tiny_config(tmp_path))
    async with app.run_test(size=SIZE) as pilot:
        app.query_one("#f-stage", Select).value = "dpo"
        await pilot.pause()
        await pilot.pause()
        from llm_core.dpo import DPO_RECIPE

        assert float(app.query_one("#f-peak_lr", Input).value) == DPO_RECIPE["peak_lr"]
        assert app.query_one("#form").config.stage == "dpo"


async def test_number_keys_help_and_namespaced_palette(tmp_path) -> None:
    app = make_app(tmp_path / "runs", tiny_config(tmp_path))
    async with app.run_test(size=SIZE) as pilot:
        app.set_focus(None)
        for key, panel in (("2", "dashboard"), ("3", "runs"), ("4", "chat")):
            await pilot.press(key)
            assert app.panel == panel
        await pilot.press("1")  # in chat the message input has the focus: a digit is text
        assert app.panel == "chat" and app.query_one("#chat-input", Input).value == "1"
        await pilot.press("escape", "1")  # Esc leaves the input; then the digit switches
        assert app.panel == "run"
        await pilot.press("3")
        await pilot.press("question_mark")
        assert type(app.screen).__name__ == "HelpScreen"
        await pilot.press("escape")
        assert type(app.screen).__name__ != "HelpScreen"
        titles = [title for title, _, _ in WorkbenchCommands(app.screen)._all()]
        for prefix in ("train:", "chat:", "runs:", "export:"):
            assert any(t.startswith(prefix) for t in titles), prefix
        dash = app.query_one("#dash")
        assert dash.check_action("pause", ()) is False  # no run: pause/stop are not offered in the footer
        assert dash.check_action("stop", ()) is False


async def test_broken_run_is_listed_with_its_reason(tmp_path) -> None:
    trained_run(tmp_path, "good")
    broken = tmp_path / "runs" / "broken"
    broken.mkdir(parents=True)
    (broken / "config.json").write_text("{not json")
    app = make_app(tmp_path / "runs", tiny_config(tmp_path))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("3")
        await runs_listed(pilot)
        table = app.query_one("#runs-table", DataTable)
        rows = {table.get_row_at(i)[0]: table.get_row_at(i) for i in range(table.row_count)}
        assert rows["broken"][2] == "BROKEN" and "not valid JSON" in rows["broken"][6]
        index = [i for i in range(table.row_count) if table.get_row_at(i)[0] == "broken"][0]
        table.move_cursor(row=index)
        await pilot.press("c")  # chat with a broken run: a notice, no crash
        await pilot.pause()
        assert app.panel == "runs"


async def test_open_past_run_compare_and_attach(tmp_path) -> None:
    a, b = trained_run(tmp_path, "a"), trained_run(tmp_path, "b", seed=8)
    app = make_app(tmp_path / "runs", tiny_config(tmp_path))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("3")
        await runs_listed(pilot)
        await pilot.press("enter")
        await run_shown(pilot)
        dash = app.query_one("#dash")
        assert app.panel == "dashboard" and dash.run.steps and dash.run.name in ("a", "b")
        await pilot.press("3", "k", "down", "k")
        await until(pilot, lambda: dash.compare is not None, "the comparison read")
        await run_shown(pilot)
        assert dash.compare is not None and {dash.run.name, dash.compare.name} == {"a", "b"}
        assert "vs" in app.query_one("#plot-extra", MetricPlot).spec.title
        # attach: follow a run folder another process appends to
        live = tmp_path / "runs" / "other"
        live.mkdir()
        (live / "config.json").write_text(json.dumps({"stage": "pretrain", "max_steps": 10}))
        await pilot.press("3", "r")
        await until(pilot, lambda: "other" in [r.name for r in app.query_one("#runs-list").runs], "other listed")
        await runs_listed(pilot)
        table = app.query_one("#runs-table", DataTable)
        table.move_cursor(row=[i for i in range(table.row_count) if table.get_row_at(i)[0] == "other"][0])
        await pilot.press("a")
        await until(pilot, lambda: app.followed is not None and dash.run is app.followed, "attached")
        await run_shown(pilot)  # the history so far is read in a worker, then the follower takes over
        with (live / "metrics.jsonl").open("a") as f:
            for step in range(3):
                f.write(json.dumps({"type": "step", "step": step, "lr": 1e-3, "loss": 2.0 - step,
                                    "grad_norm": 1.0, "tokens": 64 * (step + 1)}) + "\n")
        await until(pilot, lambda: len(app.live.steps) == 3, "followed steps")
        assert app.live.loss == [2.0, 1.0, 0.0]


async def chat_opened(app, pilot) -> ChatColumn:
    """Open the runs list, chat with the selected run, and wait for its checkpoint: the chat input has focus."""
    await pilot.press("3")
    await runs_listed(pilot)
    await pilot.press("c")
    assert app.panel == "chat" and app.focused is app.query_one("#chat-input", Input)
    column = app.query_one("#chat-a", ChatColumn)
    await until(pilot, lambda: column.conversation is not None, "checkpoint loaded")
    return column


async def test_chat_with_a_checkpoint_in_each_mode(tmp_path) -> None:
    trained_run(tmp_path, "base")
    app = make_app(tmp_path / "runs", tiny_config(tmp_path))
    async with app.run_test(size=SIZE) as pilot:
        column = await chat_opened(app, pilot)
        pane = app.query_one("#chat", ChatPane)
        for mode in ("greedy", "sample", "cot", "vote", "beam", "best"):
            app.query_one("#chat-mode", Select).value = mode
            app.query_one("#chat-n", Input).value = "3"
            await pilot.pause()
            app.query_one("#chat-input", Input).focus()
            await pilot.press(*"add 2 and 3", "enter")
            await until(pilot, lambda: not column.busy and len(column.conversation.turns) > 0
                        and column.conversation.turns[-1].mode == mode, f"{mode} answer")
            assert pane.last_turn.mode == mode and pane.last_turn.new_tokens > 0
        # The samples / beams are children of each collapsible, mounted when it is composed (after `_finish`).
        await until(pilot, lambda: all(c.is_mounted for c in column.query(Collapsible)), "the answers mounted")
        turns = {t.mode: t for t in column.conversation.turns}
        shown = {prefix: [c for c in column.query(Collapsible) if c.title.startswith(prefix)]
                 for prefix in ("votes:", "beams:", "best of")}
        # the tally, the beams and the scored samples each listed, one collapsible per sample / beam
        assert len(shown["votes:"][-1].query(Collapsible)) == len(turns["vote"].vote.samples)
        assert len(shown["beams:"][-1].query(Collapsible)) == len(turns["beam"].beams.beams) == 3
        scored = shown["best of"][-1].query(Collapsible)
        assert len(scored) == 3 and sum("(kept)" in c.title for c in scored) == 1
        assert f"kept answer {turns['best'].final}" in shown["best of"][-1].title
        assert len(column.conversation.turns) == 6
        await pilot.press("ctrl+s")
        exported = list((tmp_path / "runs").glob("chat-*.md"))
        assert exported and "add 2 and 3" in exported[0].read_text()
        await pilot.press("ctrl+t")  # the token view of the last answer, focused: right moves to token 2
        assert app.query_one("#chat-tokens").display and app.focused is app.query_one("#token-view")
        await pilot.press("right")
        probs = pane.last_turn.token_probs
        assert f"p={probs[1][1]:.3f}" in str(app.query_one("#token-detail").render())


async def test_quitting_while_training_stops_and_saves(tmp_path) -> None:
    app = make_app(tmp_path / "runs", long_run(tmp_path))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("1", "ctrl+s")
        await until(pilot, lambda: app.live is not None and len(app.live.steps) >= 3, "training")
        await pilot.press("ctrl+q")
        assert isinstance(app.screen, Confirm) and app.session.active  # quitting while training asks first
        await pilot.press("enter")
        await app.workers.wait_for_complete()
        await until(pilot, lambda: app.return_code is not None or not app.is_running, "app exit")
    trainer = app.session.trainer
    assert trainer.state == "finished"
    assert (trainer.run_dir / "checkpoints" / f"step-{trainer.step:08d}").is_dir()


async def test_default_warmup_follows_the_steps(tmp_path) -> None:
    app = make_app(tmp_path / "runs")  # the default experiment: warmup is a fraction of the steps
    async with app.run_test(size=SIZE) as pilot:
        assert app.query_one("#f-warmup_steps", Input).value == ""
        app.query_one("#f-max_steps", Input).value = "3"
        await pilot.pause()
        config = app.query_one("#form").config
        assert config is not None and config.max_steps == 3 and config.warmup == 0
        app.query_one("#f-warmup_steps", Input).value = "5"  # explicit and longer than the run: refused
        await pilot.pause()
        assert app.query_one("#form").config is None
        assert "max_steps=3" in str(app.query_one("#e-warmup_steps").render())


async def test_chat_picks_one_of_several_checkpoints(tmp_path) -> None:
    run = trained_run(tmp_path, "multi", checkpoint_every=3, keep_last=3)  # 6 steps: step-3 and step-6
    (run / "checkpoints" / "step-00000003" / "manifest.json").write_text("{")  # ... and step-3 is broken
    app = make_app(tmp_path / "runs", tiny_config(tmp_path))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("3")
        await runs_listed(pilot)
        await pilot.press("c")
        picker = app.screen
        assert isinstance(picker, CheckpointPicker)
        options = picker.query_one(OptionList)
        await until(pilot, lambda: "verifying ..." not in picker.states.values(), "the checkpoints verified")
        labels = [str(options.get_option_at_index(i).prompt) for i in range(options.option_count)]
        assert labels[0] == "step 6  (latest)  verified" and labels[1].startswith("step 3  broken:")
        assert options.get_option_at_index(1).disabled
        await pilot.press("enter")
        await pilot.pause()
        assert app.panel == "chat" and app.focused is app.query_one("#chat-input", Input)
        column = app.query_one("#chat-a", ChatColumn)
        await until(pilot, lambda: column.conversation is not None, "checkpoint loaded")
        assert "(step 6)" in column.conversation.name
        await pilot.press("escape", "3", "c", "escape")  # Esc: no change
        assert app.panel == "runs" and not isinstance(app.screen, CheckpointPicker)



async def test_dora_switch_keeps_the_adapter_learning_rate_when_the_stage_changes(tmp_path) -> None:
    from llm_core.training import stage_recipe

    app = make_app(tmp_path / "runs", tiny_config(tmp_path))
    async with app.run_test(size=SIZE) as pilot:
        app.query_one("#f-dora", Switch).value = True
        await pilot.pause()
        app.query_one("#f-stage", Select).value = "sft"
        await pilot.pause()
        await pilot.pause()
        config = app.query_one("#form").config
        assert config.adapter == "dora"
        # the adapter recipe's learning rate, not full finetuning's (the bug read only the LoRA switch)
        assert config.peak_lr == stage_recipe("sft", "dora")["peak_lr"] != stage_recipe("sft", "none")["peak_lr"]


async def test_first_run_welcome_trains_then_offers_chat(tmp_path) -> None:
    app = make_app(tmp_path / "runs", tiny_config(tmp_path, name="first"))
    async with app.run_test(size=SIZE) as pilot:
        # no runs yet: the app opens on the dashboard's welcome, the Train button focused
        assert app.panel == "dashboard" and app.focused is app.query_one("#welcome-train")
        assert "first: tiny on" in str(app.query_one("#welcome-text").render())
        await pilot.press("enter")
        await app.workers.wait_for_complete()
        await until(pilot, lambda: app.local is not None and app.local.end is not None, "the run's end")
        await pilot.pause()
        dash = app.query_one("#dash")
        assert app.panel == "dashboard" and app.focused is dash
        assert dash.check_action("chat", ()) is True  # it finished with a checkpoint: c chats with it
        await pilot.press("c")
        await pilot.pause()
        assert app.panel == "chat" and app.focused is app.query_one("#chat-input", Input)
        column = app.query_one("#chat-a", ChatColumn)
        await until(pilot, lambda: column.conversation is not None, "checkpoint loaded")
        assert column.conversation.name.startswith("first (step 6)")


async def test_a_run_replacing_the_focused_welcome_keeps_the_dashboards_keys(tmp_path) -> None:
    """The welcome's Train button has the focus; when a run is shown in its place (the button hidden),
    the focus moves to the dashboard, so its keys (m, l, t) keep working."""
    app = make_app(tmp_path / "runs", tiny_config(tmp_path, name="first"))
    async with app.run_test(size=SIZE) as pilot:
        dash = app.query_one("#dash")
        assert app.focused is app.query_one("#welcome-train")
        dash.show_run(RunSeries.from_events({"type": "step", "step": i, "loss": 5.0 - i / 100, "lr": 1e-3,
                                             "tokens": 100 * i} for i in range(1, 50)))
        await pilot.pause()
        assert app.focused is dash
        await pilot.press("m")
        assert dash.smoothing > 0


async def test_worker_results_arriving_as_the_app_shuts_down_are_dropped(tmp_path) -> None:
    """A run that ends as the user quits: the runs list's re-read (and the other worker results) reach the
    app after its panels are gone, and must not crash it on the way out."""
    app = make_app(tmp_path / "runs", tiny_config(tmp_path, name="first"))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert not app._torn_down()
        screen = app.screen
    assert app._torn_down()
    app._runs_listed(RunsList.Listed([]))
    app._training_ended()
    assert not screen.query("#form")  # (what a handler would have queried)


def test_make_app_keeps_freed_memory_before_any_worker_thread_unless_the_config_says_no(tmp_path, monkeypatch):
    import workbench.tui.app as app_module

    calls = []
    monkeypatch.setattr(app_module, "reuse_freed_memory", lambda: calls.append(1) or True)
    make_app(tmp_path / "runs", tiny_config(tmp_path))
    assert calls == [1]
    make_app(tmp_path / "runs", tiny_config(tmp_path).with_overrides(reuse_freed_memory=False))
    assert calls == [1]


async def test_status_line_names_the_run_training_here_while_another_is_attached(tmp_path) -> None:
    trained_run(tmp_path, "other")
    app = make_app(tmp_path / "runs", long_run(tmp_path))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("1", "ctrl+s")
        await until(pilot, lambda: app.local is not None and len(app.local.steps) >= 2, "training")
        status = app.query_one("#status")
        assert "live" in str(status.render()) and "training here" in str(status.render())
        await pilot.press("3", "r")
        await runs_listed(pilot)
        table = app.query_one("#runs-table", DataTable)
        table.move_cursor(row=[i for i in range(table.row_count) if table.get_row_at(i)[0] == "other"][0])
        await pilot.press("a")
        await until(pilot, lambda: app.followed is not None and app.followed.steps, "followed steps")
        steps_here = len(app.local.steps)
        await until(pilot, lambda: len(app.local.steps) > steps_here, "training goes on")
        text = str(status.render())
        assert text.startswith("other") and "attached" in text and "training here: live step" in text
        assert app.followed.total_steps == 6 and len(app.followed.steps) == 6  # events of the two never mix
        app.query_one("#dash").focus()
        await pilot.press("x")
        await until(pilot, lambda: isinstance(app.screen, Confirm), "the stop confirmation")
        await pilot.press("enter")
        await until(pilot, lambda: not app.session.active, "the run stopped")


async def test_rl_stage_shows_its_fields_validates_them_and_fills_its_recipe(tmp_path) -> None:
    from llm_core.training.stages import RL_RECIPE

    app = make_app(tmp_path / "runs", tiny_config(tmp_path))
    async with app.run_test(size=SIZE) as pilot:
        assert not app.query_one("#rl-fields").display
        app.query_one("#f-stage", Select).value = "rl"
        await pilot.pause()
        await pilot.pause()
        assert app.query_one("#rl-fields").display
        assert float(app.query_one("#f-peak_lr", Input).value) == RL_RECIPE["peak_lr"]
        app.query_one("#f-group_size", Input).value = "1"
        await pilot.pause()
        assert "at least 2 completions" in str(app.query_one("#e-group_size").render())
        app.query_one("#f-group_size", Input).value = "4"
        app.query_one("#f-reward", Input).value = "accuracy:1,format:0.5"
        await pilot.pause()
        config = app.query_one("#form").config
        assert (config.stage, config.group_size, config.reward) == ("rl", 4, "accuracy:1,format:0.5")


async def test_keys_right_after_a_panel_switch_go_to_the_new_panel(tmp_path) -> None:
    # The keys arrive in one burst, as from a fast typist or a paste: the focus must move before the next
    # key is handled, or the first letters land on the old panel's bindings (3 then "a" would attach).
    trained_run(tmp_path, "base")
    app = make_app(tmp_path / "runs", tiny_config(tmp_path))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("3")
        await pilot.pause()

        async def burst(keys: list[str]) -> None:  # queued at once, as the terminal driver delivers them
            for key in keys:
                app.post_message(events.Key(key, key if len(key) == 1 else None))
            await pilot.pause()
            await pilot.pause()

        await burst(["4", "s", "a", "q"])
        assert app.panel == "chat" and app.query_one("#chat-input", Input).value == "saq"
        await burst(["escape", "3", "2"])  # Esc, then digits are panel keys again, each taking effect at once
        assert app.panel == "dashboard"
        assert not app.training and sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["base"]


async def test_trackers_field_checks_names_and_packages_and_the_run_writes_them(tmp_path, monkeypatch) -> None:
    import sys

    app = make_app(tmp_path / "runs", tiny_config(tmp_path, name="tracked"))
    async with app.run_test(size=SIZE) as pilot:
        form, field = app.query_one("#form"), app.query_one("#f-loggers", Input)
        assert field.value == "" and form.config.loggers == ()
        field.value = "csv,nope"
        await pilot.pause()
        assert "unknown logger 'nope'" in str(app.query_one("#e-loggers").render()) and form.config is None
        monkeypatch.setitem(sys.modules, "tensorboard", None)  # as if it were not installed
        field.value = "csv, tensorboard"
        await pilot.pause()
        assert "tensorboard needs the package 'tensorboard': pip install 'llm-workbench[tensorboard]'" in str(
            app.query_one("#e-loggers").render())
        assert form.config is None
        field.value = "csv"
        await pilot.pause()
        assert form.config.loggers == ("csv",)
        await pilot.press("1", "ctrl+s")
        await until(pilot, lambda: app.train_worker is not None and app.train_worker.is_finished, "the run ended")
    trainer = app.session.trainer
    assert trainer.state == "finished"
    rows = (trainer.run_dir / "metrics.csv").read_text().splitlines()
    assert rows[0].startswith("step,epoch,lr,loss") and len(rows) == 1 + trainer.config.max_steps


async def test_run_form_takes_a_peft_adapter_folder_to_continue(tmp_path) -> None:
    app = make_app(tmp_path / "runs", tiny_config(tmp_path))
    async with app.run_test(size=SIZE) as pilot:
        form = app.query_one("#form")
        app.query_one("#f-init_adapters", Input).value = str(tmp_path / "adapters")
        await pilot.pause()
        assert form.config is None  # no adapter kind and no base: refused next to the field
        assert "needs adapter=lora or dora" in str(app.query_one("#e-init_adapters").render())
        app.query_one("#f-init_from", Input).value = str(tmp_path / "base")
        app.query_one("#f-dora", Switch).value = True
        await pilot.pause()
        assert form.config is not None and form.config.init_adapters == str(tmp_path / "adapters")
        assert form.config.adapter == "dora"


async def test_distill_stage_picks_a_teacher_trains_and_plots_kd_and_ce(tmp_path) -> None:
    """Stage distill in the run form: its fields show, the teacher is picked from the runs with a checkpoint,
    ctrl+s trains it, and the dashboard's fourth plot is the KD and CE terms."""
    teacher = trained_run(tmp_path, "teacher")
    app = make_app(tmp_path / "runs", tiny_config(tmp_path, context_length=64, max_steps=4, name="student"))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("1")
        await runs_listed(pilot)
        assert not app.query_one("#distill-fields").display
        app.query_one("#f-stage", Select).value = "distill"
        await pilot.pause()
        await pilot.pause()
        assert app.query_one("#distill-fields").display and not app.query_one("#rl-fields").display
        assert app.query_one("#f-model", Select).value == "tiny-student"  # the recipe's quarter-size student
        assert "stage distill needs a teacher" in str(app.query_one("#e-teacher").render())
        app.query_one("#f-model", Select).value = "tiny"  # the test's own tiny shape, so it trains in ms
        pick = app.query_one("#f-teacher-pick", Select)
        await until(pilot, lambda: any(value == str(teacher) for _, value in pick._options), "teacher offered")
        pick.value = str(teacher)
        app.query_one("#f-kd_alpha", Input).value = "0.7"
        await until(pilot, lambda: app.query_one("#form").config is not None, "a valid distill config")
        config = app.query_one("#form").config
        assert (config.stage, config.teacher, config.kd_alpha, config.distill_mode) == (
            "distill", str(teacher), 0.7, "logits")
        app.query_one("#form").focus_here()
        await pilot.press("ctrl+s")
        # The end event drained into the live series, not only the worker done: the UI drains on a timer.
        # session.end is set in the worker's thread after trainer.run() returns: later than the end event.
        await until(pilot, lambda: app.local is not None and app.local.end is not None
                    and app.train_worker.is_finished, "the distill run ended", rounds=4000)
        assert app.session.end["reason"] == "finished", app.session.error
        assert len(app.live.kd_loss) == 4 and all(v > 0 for v in app.live.kd_loss + app.live.ce_loss)
        await until(pilot, lambda: app.query_one("#plot-extra").spec is not None
                    and app.query_one("#plot-extra").spec.title.startswith("distillation"), "the KD / CE plot")


async def test_chat_info_line_says_when_the_head_was_screened(tmp_path, monkeypatch) -> None:
    """Where the bf16 screen reads the head (`llm_core.engine.screened_head`; here for the tiny run's small
    head too), the line under a greedy answer says how many fp32 logits a step it computed."""
    import pytest
    import torch

    from llm_core.device import supports_bf16
    from llm_core.engine import screened_head

    if not supports_bf16(torch.device("cpu")):
        pytest.skip("this CPU has no bf16 arithmetic: the Engine does not screen")
    monkeypatch.setattr(screened_head, "SCREEN_MIN_ELEMENTS", 0)
    trained_run(tmp_path, "base")
    app = make_app(tmp_path / "runs", tiny_config(tmp_path))
    async with app.run_test(size=SIZE) as pilot:
        column = await chat_opened(app, pilot)
        await pilot.press(*"add 2 and 3", "enter")
        await until(pilot, lambda: not column.busy and len(column.conversation.turns) == 1, "the answer")
        turn = column.conversation.turns[0]
        assert 0 < turn.screened_steps <= turn.new_tokens + 1  # a step a token (and the stop id's)
        await until(pilot, lambda: any("head screened in bf16" in str(s.render()) for s in column.query(".info")),
                    "the info line")
