"""Rewards for reinforcement learning on reasoning: a number per completion.

DeepSeek-R1-Zero (DeepSeek-AI, 2025, "DeepSeek-R1", arXiv:2501.12948, section 2.2.2) learned to reason by
RL from a base model with two rule-based rewards only: an accuracy reward (is the final answer right?)
and a format reward (is the answer where it should be, the reasoning in its place?). Rules cannot be
gamed the way a learned reward model can, and need no labelled preferences: these are "verifiable
rewards". A learned reward model (`llm_core.rl.reward_model`) is the other kind: the PPO recipe's
(Ouyang et al., 2022), trained on preference pairs.

A `Reward` is anything with a `name` and `__call__(prompt, completion, example) -> float`, where
`example` is the training record (for the default experiment it has the integer `answer`). Plain
functions of that signature are rewards too (`as_reward`), and `WeightedSum` mixes several.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping, Protocol, runtime_checkable

from ..errors import ConfigError
from ..experiment.answers import extract_answer
from ..experiment.verifier import ends_with_answer_line, is_worked_solution


@runtime_checkable
class Reward(Protocol):
    name: str

    def __call__(self, prompt: str, completion: str, example: Mapping[str, Any]) -> float: ...


@dataclass(frozen=True)
class AccuracyReward:
    """1 when the completion's answer (its "The answer is N", else its last number) equals
    `example["answer"]`, else 0."""

    name: str = "accuracy"

    def __call__(self, prompt: str, completion: str, example: Mapping[str, Any]) -> float:
        if "answer" not in example:
            raise ConfigError("accuracy reward: the example has no 'answer' field")
        return 1.0 if extract_answer(completion) == int(example["answer"]) else 0.0


@dataclass(frozen=True)
class FormatReward:
    """0.5 when the completion ends with the answer line ("The answer is N."), plus 0.5 when what comes
    before it parses as a worked solution (expression line, one line per operation). The arithmetic is not
    checked here (accuracy and the verifier do that), only the shape, as R1-Zero's format reward checks
    only that the reasoning sits between its tags."""

    name: str = "format"

    def __call__(self, prompt: str, completion: str, example: Mapping[str, Any]) -> float:
        if not ends_with_answer_line(completion):
            return 0.0
        return 1.0 if is_worked_solution(completion) else 0.5


@dataclass(frozen=True)
class FunctionReward:
    """A plain Python callable `(prompt, completion, example) -> float` used as a reward."""

    fn: Callable[[str, str, Mapping[str, Any]], float]
    name: str = "custom"

    def __call__(self, prompt: str, completion: str, example: Mapping[str, Any]) -> float:
        return float(self.fn(prompt, completion, example))


class WeightedSum:
    """sum_k w_k * reward_k; `parts(...)` gives each term too, for the metrics."""

    def __init__(self, rewards: list[tuple[Reward, float]]) -> None:
        if not rewards:
            raise ConfigError("reward: at least one reward is needed")
        self.rewards = rewards
        self.name = ",".join(r.name if w == 1 else f"{r.name}:{w:g}" for r, w in rewards)

    def parts(self, prompt: str, completion: str, example: Mapping[str, Any]) -> dict[str, float]:
        return {r.name: float(r(prompt, completion, example)) for r, _ in self.rewards}

    def __call__(self, prompt: str, completion: str, example: Mapping[str, Any]) -> float:
        parts = self.parts(prompt, completion, example)
        return sum(w * parts[r.name] for r, w in self.rewards)


BUILTIN: dict[str, Callable[[], Reward]] = {"accuracy": AccuracyReward, "format": FormatReward}


def as_reward(obj: Reward | Callable[[str, str, Mapping[str, Any]], float]) -> Reward:
    """A Reward as is; a plain function wrapped (named after it)."""
    if isinstance(obj, Reward):
        return obj
    if callable(obj):
        return FunctionReward(obj, name=getattr(obj, "__name__", "custom"))
    raise ConfigError(f"reward: {obj!r} is neither a Reward nor a callable")


def parse_reward(spec: str, model_loader: Callable[[str], Reward] | None = None) -> WeightedSum:
    """'accuracy,format' or 'accuracy:1,format:0.5' or 'model:PATH' (mixable: 'accuracy,model:PATH:0.5').

    `model_loader` builds the learned reward from PATH (the RL stage passes the reward-model loader).
    """
    terms: list[tuple[Reward, float]] = []
    for raw in (p.strip() for p in spec.split(",")):
        if not raw:
            raise ConfigError(f"reward: empty term in {spec!r}")
        if raw.startswith("model:"):
            path, weight = raw[len("model:"):], 1.0
            head, _, tail = path.rpartition(":")
            if head and _is_number(tail):
                path, weight = head, float(tail)
            if model_loader is None:
                raise ConfigError(f"reward: {raw!r} needs a reward-model loader "
                                  "(llm_core.rl.reward_model.load_reward_model; the rl stage passes it)")
            terms.append((model_loader(path), weight))
            continue
        name, _, weight_text = raw.partition(":")
        if name not in BUILTIN:
            raise ConfigError(f"reward: unknown reward {name!r} (valid: {', '.join(BUILTIN)}, model:PATH)")
        if weight_text and not _is_number(weight_text):
            raise ConfigError(f"reward: weight of {name!r} is not a number: {weight_text!r}")
        terms.append((BUILTIN[name](), float(weight_text) if weight_text else 1.0))
    return WeightedSum(terms)


def mix(*terms: tuple[str | Reward | Callable[[str, str, Mapping[str, Any]], float], float]) -> WeightedSum:
    """A weighted sum of built-in rewards (by name), Rewards and plain callables:
    `mix(("accuracy", 1.0), (my_function, 0.1))`."""
    rewards: list[tuple[Reward, float]] = []
    for reward, weight in terms:
        if isinstance(reward, str):
            if reward not in BUILTIN:
                raise ConfigError(f"reward: unknown reward {reward!r} (valid: {', '.join(BUILTIN)})")
            reward = BUILTIN[reward]()
        rewards.append((as_reward(reward), float(weight)))
    return WeightedSum(rewards)


def check_reward_spec(spec: str) -> None:
    """Validate a reward spec without loading any reward model (for config validation)."""
    parse_reward(spec, model_loader=lambda path: AccuracyReward(name=f"model:{path}"))


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
