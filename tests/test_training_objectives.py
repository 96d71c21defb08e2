"""The Objective hooks the Trainer calls for every stage (tunables, own state, per-step alarms) and the
stage registry (a new stage is one Objective plus one STAGES line)."""
from __future__ import annotations

import dataclasses

import pytest

from llm_core import ConfigError
from llm_core.training import Trainer, read_metrics, stage_config
from llm_core.training.objectives import LanguageModelingObjective
from llm_core.training.stages import STAGES, StageSpec
from training_helpers import tiny_config


class HookedObjective(LanguageModelingObjective):
    """Next-token loss with a tunable `weight`, a count of steps seen kept in checkpoints, and an alarm."""

    TUNABLES = ("weight",)

    def __init__(self) -> None:
        self.weight = 1.0
        self.steps_seen = 0

    def state_dict(self) -> dict:
        return {**super().state_dict(), "steps_seen": self.steps_seen}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.steps_seen = state["steps_seen"]

    def on_step(self, trainer, event: dict) -> None:
        if event["type"] == "step":
            self.steps_seen += 1
            if event["step"] == 1:
                trainer.emit("alarm", kind="toy", step=event["step"], message="step 1 seen")


def toy_objective(config, model) -> HookedObjective:
    return HookedObjective()


def test_tunables_apply_at_the_next_step_and_are_validated(tmp_path) -> None:
    trainer = Trainer(tiny_config(tmp_path, max_steps=3), objective=HookedObjective())
    trainer.subscribe(lambda e: e["type"] == "step" and e["step"] == 0 and trainer.set_tunable("weight", 2.5))
    trainer.run()
    steps = [e for e in trainer.history if e["type"] == "step"]
    assert [e["weight"] for e in steps] == [1.0, 2.5, 2.5] and trainer.objective.weight == 2.5
    for name, value, needle in (("beta", 0.2, "beta"), ("weight", 0, "weight"), ("weight", float("nan"), "weight")):
        with pytest.raises(ConfigError, match=needle) as err:
            trainer.set_tunable(name, value)
        assert "\n" not in str(err.value)


def test_objective_state_is_checkpointed_and_restored_on_resume(tmp_path) -> None:
    trainer = Trainer(tiny_config(tmp_path, max_steps=4, name="hooked"), objective=HookedObjective())
    trainer.set_tunable("weight", 3.0)
    trainer.run()
    assert trainer.state_dict()["objective"] == {"weight": 3.0, "steps_seen": 4}
    resumed = Trainer.resume(trainer.run_dir, objective=HookedObjective(), max_steps=6)
    assert (resumed.objective.weight, resumed.objective.steps_seen) == (3.0, 4)


def test_the_step_hook_raises_alarms_through_the_public_emit(tmp_path) -> None:
    trainer = Trainer(tiny_config(tmp_path, max_steps=3), objective=HookedObjective())
    seen = []
    trainer.subscribe(lambda e: seen.append((e["type"], e.get("step"))))
    trainer.run()
    alarms = [e for e in read_metrics(trainer.run_dir) if e["type"] == "alarm"]
    assert [(a["kind"], a["step"]) for a in alarms] == [("toy", 1)]
    assert seen.index(("step", 1)) < seen.index(("alarm", 1))  # the alarm follows the step it is about


def test_a_new_stage_is_one_registry_line(tmp_path, monkeypatch) -> None:
    monkeypatch.setitem(STAGES, "toy", StageSpec("test_training_objectives:toy_objective", "text", "pretrain",
                                                 recipe={"max_steps": 2}))
    config = dataclasses.replace(tiny_config(tmp_path), stage="toy")
    trainer = Trainer(config)
    assert isinstance(trainer.objective, HookedObjective) and trainer.objective.tunables() == {"weight": 1.0}
    assert stage_config("pretrain").stage == "pretrain"
    with pytest.raises(ConfigError, match="pretrain, sft, dpo, rl, distill or toy"):
        stage_config("bogus")


def test_every_registered_stage_builds_its_objective_with_the_base_hooks(tmp_path) -> None:
    from llm_core.training.objectives import Objective

    teacher = Trainer(tiny_config(tmp_path, name="teacher", max_steps=1, warmup_steps=0))  # distill needs one
    teacher.run()
    for name, spec in STAGES.items():
        config = dataclasses.replace(tiny_config(tmp_path), stage=name, teacher=str(teacher.run_dir))
        trainer_model = Trainer(tiny_config(tmp_path, name=f"m-{name}")).model
        objective = spec.make_objective(config, trainer_model)
        assert isinstance(objective, Objective)
        state = objective.state_dict()
        objective.load_state_dict(state)  # the state round-trips
        assert objective.state_dict() == state
        if name != "rl":  # (RL's state is its rollout counter and cache, not tunables)
            assert state == objective.tunables()
    assert STAGES["dpo"].make_objective(stage_config("dpo"), trainer_model).tunables() == {"beta": 0.1}
