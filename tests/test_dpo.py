"""DPO math, masks, the objective's reference strategies and forward count, beta changes, collapse alarms."""
from __future__ import annotations

import copy
import math
import random
from types import SimpleNamespace

import pytest
import torch

from llm_core import ConfigError, GPT, GPTConfig, dpo_loss
from llm_core.adapters import adapter_layers, add_adapters
from llm_core.data import collate_preference
from llm_core.data.instruction import shift_and_mask
from llm_core.dpo import (
    CollapseMonitor, DPOObjective, evaluate_dpo, frozen_copy, make_dpo_objective,
    sequence_logprobs,
)

VOCAB = 23


def tiny_model(seed: int = 0) -> GPT:
    model = GPT(GPTConfig(vocab_size=VOCAB, context_length=16, d_model=16, n_layers=1, n_heads=2))
    model.reset_parameters(generator=torch.Generator().manual_seed(seed))
    return model.eval()


def pair(prompt: list[int], chosen: list[int], rejected: list[int]) -> dict[str, torch.Tensor]:
    c_ids, c_labels = shift_and_mask(prompt, chosen, 16)
    r_ids, r_labels = shift_and_mask(prompt, rejected, 16)
    return {"chosen_input_ids": c_ids, "chosen_labels": c_labels,
            "rejected_input_ids": r_ids, "rejected_labels": r_labels}


def batch() -> dict[str, torch.Tensor]:
    # Different prompt and response lengths, so padding and masking both matter.
    return collate_preference([pair([1, 2, 3], [4, 5], [6, 7, 8, 9]), pair([10, 11], [12, 13, 14], [15])], pad_id=0)


def perturb(model: GPT, seed: int = 1) -> None:
    """Move the policy away from the reference (deterministically)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))


# --- The loss, by hand ---------------------------------------------------------------------------------
def test_dpo_loss_and_rewards_match_hand_computation() -> None:
    pc, pr = [-4.0, -7.5, -2.0], [-5.0, -6.0, -9.0]
    rc, rr = [-4.5, -7.0, -3.0], [-4.8, -6.5, -8.0]
    beta = 0.3
    loss, chosen, rejected = dpo_loss(*(torch.tensor(v) for v in (pc, pr, rc, rr)), beta=beta)

    def log_sigmoid(x: float) -> float:
        return -math.log(1.0 + math.exp(-x))

    z = [beta * ((pc[i] - pr[i]) - (rc[i] - rr[i])) for i in range(3)]
    expected_loss = sum(-log_sigmoid(v) for v in z) / 3
    assert float(loss) == pytest.approx(expected_loss, rel=1e-6)
    assert chosen.tolist() == pytest.approx([beta * (pc[i] - rc[i]) for i in range(3)], rel=1e-6)
    assert rejected.tolist() == pytest.approx([beta * (pr[i] - rr[i]) for i in range(3)], rel=1e-6)

    eps = 0.1  # conservative DPO: labels flipped with probability eps
    smooth, _, _ = dpo_loss(*(torch.tensor(v) for v in (pc, pr, rc, rr)), beta=beta, label_smoothing=eps)
    expected_smooth = sum(-(1 - eps) * log_sigmoid(v) - eps * log_sigmoid(-v) for v in z) / 3
    assert float(smooth) == pytest.approx(expected_smooth, rel=1e-6)

    ipo, _, _ = dpo_loss(*(torch.tensor(v) for v in (pc, pr, rc, rr)), beta=beta, loss_type="ipo")
    h = [(pc[i] - pr[i]) - (rc[i] - rr[i]) for i in range(3)]
    assert float(ipo) == pytest.approx(sum((v - 1 / (2 * beta)) ** 2 for v in h) / 3, rel=1e-6)


def test_loss_is_log2_at_step_0_when_policy_equals_reference() -> None:
    model = tiny_model()
    objective = DPOObjective(beta=0.1, reference="copy", reference_model=frozen_copy(model))
    loss, metrics = objective.loss(model, batch())
    assert float(loss.detach()) == pytest.approx(math.log(2), abs=1e-6)
    assert metrics["reward_margin"] == pytest.approx(0.0, abs=1e-6)
    assert metrics["chosen_reward"] == pytest.approx(0.0, abs=1e-6)
    assert metrics["reward_accuracy"] == 0.0  # ties are not wins


# --- Masks and the shift -------------------------------------------------------------------------------
def test_sequence_logprobs_on_hand_built_logits() -> None:
    logits = torch.tensor([[[0.1, 0.2, 0.3], [1.0, -1.0, 0.5], [0.0, 2.0, -2.0], [9.0, 9.0, -9.0]]])  # (1, 4, 3)
    labels = torch.tensor([[-100, 2, 0, -100]])  # prompt target, two response targets, padding

    def log_softmax(row: list[float], i: int) -> float:
        return row[i] - math.log(sum(math.exp(v) for v in row))

    expected = log_softmax([1.0, -1.0, 0.5], 2) + log_softmax([0.0, 2.0, -2.0], 0)
    assert float(sequence_logprobs(logits, labels)) == pytest.approx(expected, rel=1e-6)
    assert float(sequence_logprobs(logits, labels, average=True)) == pytest.approx(expected / 2, rel=1e-6)


def test_sequence_logprobs_are_response_tokens_given_their_prefix() -> None:
    """End to end with the dataset's shift: sum over response tokens of log p(token | everything before)."""
    model = tiny_model()
    prompt, response = [1, 2, 3, 4], [5, 6, 7]
    ids, labels = shift_and_mask(prompt, response, 16)
    padded = collate_preference([{"chosen_input_ids": ids, "chosen_labels": labels,
                                  "rejected_input_ids": torch.tensor([1, 2, 3, 4, 9, 9, 9, 9, 9]),
                                  "rejected_labels": torch.tensor([-100] * 3 + [9] * 6)}], pad_id=0)
    assert padded["chosen_input_ids"].shape[1] == 9  # padded beyond the chosen sequence
    full = prompt + response
    expected = 0.0
    with torch.no_grad():
        got = float(sequence_logprobs(model(padded["chosen_input_ids"]), padded["chosen_labels"]))
        for j in range(len(prompt), len(full)):  # each response token, predicted from its prefix alone
            prefix_logits = model(torch.tensor([full[:j]]))[0, -1]
            expected += float(prefix_logits.log_softmax(-1)[full[j]])
    assert got == pytest.approx(expected, rel=1e-5)


# --- The objective -------------------------------------------------------------------------------------
def test_one_concatenated_forward_per_model() -> None:
    model = tiny_model()
    objective = DPOObjective(beta=0.1, reference="copy", reference_model=frozen_copy(model))
    calls: dict[str, list[tuple[int, ...]]] = {"policy": [], "reference": []}
    model.register_forward_pre_hook(lambda m, args: calls["policy"].append(tuple(args[0].shape)))
    objective.reference_model.register_forward_pre_hook(lambda m, args: calls["reference"].append(tuple(args[0].shape)))
    b = batch()
    objective.loss(model, b)
    B, L = b["chosen_input_ids"].shape
    assert calls == {"policy": [(2 * B, L)], "reference": [(2 * B, L)]}


def test_adapters_off_reference_equals_base_model_without_a_copy() -> None:
    base = tiny_model()
    model = add_adapters(copy.deepcopy(base), kind="lora", rank=2, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        for layer in adapter_layers(model).values():
            layer.B.normal_(0, 0.5, generator=torch.Generator().manual_seed(4))
    config = SimpleNamespace(beta=0.1, dpo_reference="auto", adapter="lora")
    objective = make_dpo_objective(config, model)
    assert objective.reference == "adapters" and objective.reference_model is None
    b = batch()
    ids = torch.cat([b["chosen_input_ids"], b["rejected_input_ids"]])
    labels = torch.cat([b["chosen_labels"], b["rejected_labels"]])
    with torch.no_grad():
        base_logps = sequence_logprobs(base(ids), labels)
        adapted_before = model(ids)
    ref_logps = objective.reference_logprobs(model, ids, labels)
    assert torch.allclose(ref_logps, base_logps, atol=1e-5)
    with torch.no_grad():
        assert not torch.allclose(sequence_logprobs(model(ids), labels), base_logps, atol=1e-3)
        assert torch.equal(model(ids), adapted_before)  # adapters are back on afterwards

    with pytest.raises(ConfigError, match="dpo_reference"):
        make_dpo_objective(SimpleNamespace(beta=0.1, dpo_reference="adapters", adapter="none"), tiny_model())
    assert make_dpo_objective(SimpleNamespace(beta=0.1, dpo_reference="auto"), tiny_model()).reference == "copy"


def test_beta_change_takes_effect_on_the_next_loss() -> None:
    model = tiny_model()
    objective = DPOObjective(beta=0.1, reference="copy", reference_model=frozen_copy(model))
    perturb(model)
    b = batch()
    _, m1 = objective.loss(model, b)
    objective.beta = 0.5
    loss, m2 = objective.loss(model, b)
    assert m2["beta"] == 0.5
    assert m2["chosen_reward"] == pytest.approx(5 * m1["chosen_reward"], rel=1e-5)
    margin = m2["reward_margin"] / 0.5  # the mean log-ratio margin (independent of beta)
    # The loss with beta=0.5 equals mean(-log sigmoid(0.5 * h_i)) with h_i the per-pair log-ratio margins.
    with torch.no_grad():
        ids = torch.cat([b["chosen_input_ids"], b["rejected_input_ids"]])
        labels = torch.cat([b["chosen_labels"], b["rejected_labels"]])
        pol = sequence_logprobs(model(ids), labels).tolist()
        ref = sequence_logprobs(objective.reference_model(ids), labels).tolist()
    h = [(pol[i] - pol[i + 2]) - (ref[i] - ref[i + 2]) for i in range(2)]
    assert sum(h) / 2 == pytest.approx(margin, rel=1e-4)
    assert float(loss.detach()) == pytest.approx(sum(math.log(1 + math.exp(-0.5 * v)) for v in h) / 2, rel=1e-5)


def test_sft_weight_adds_the_chosen_per_token_nll() -> None:
    model = tiny_model()
    objective = DPOObjective(beta=0.1, reference="copy", reference_model=frozen_copy(model), sft_weight=0.5)
    perturb(model)
    b = batch()
    loss, metrics = objective.loss(model, b)
    with torch.no_grad():  # independent: per-token NLL of each chosen response, then the batch mean
        logits = model(b["chosen_input_ids"]).log_softmax(-1)
        nlls = []
        for row, labels in zip(logits, b["chosen_labels"]):
            targets = [(t, int(y)) for t, y in enumerate(labels) if y != -100]
            nlls.append(-sum(float(row[t, y]) for t, y in targets) / len(targets))
    expected_nll = sum(nlls) / len(nlls)
    assert metrics["chosen_nll"] == pytest.approx(expected_nll, rel=1e-5)
    assert float(loss.detach()) == pytest.approx(metrics["dpo_loss"] + 0.5 * expected_nll, rel=1e-5)


def test_cached_reference_skips_the_reference_forward() -> None:
    model = tiny_model()
    objective = DPOObjective(beta=0.1, reference="copy", reference_model=frozen_copy(model), cache_reference=True)
    calls = []
    objective.reference_model.register_forward_pre_hook(lambda m, args: calls.append(1))
    b = batch()
    first, _ = objective.loss(model, b)
    # The same pairs padded to a longer length must hit the cache.
    longer = {k: torch.nn.functional.pad(v, (0, 3), value=-100 if k.endswith("labels") else 0) for k, v in b.items()}
    second, _ = objective.loss(model, longer)
    assert len(calls) == 1
    assert float(second.detach()) == pytest.approx(float(first.detach()), abs=1e-6)


def test_evaluate_dpo_reports_val_metrics() -> None:
    model = tiny_model()
    objective = DPOObjective(beta=0.1, reference="copy", reference_model=frozen_copy(model))
    perturb(model)
    model.train()
    result = evaluate_dpo(objective, model, [batch(), batch()])
    _, metrics = objective.loss(model, batch())
    assert model.training  # mode restored
    assert result["val_reward_margin"] == pytest.approx(metrics["reward_margin"], rel=1e-5)
    assert {"val_loss", "val_reward_accuracy", "val_policy_chosen_logp"} <= set(result)


def test_bad_batches_are_one_line_errors() -> None:
    model = tiny_model()
    objective = DPOObjective(beta=0.1, reference="copy", reference_model=frozen_copy(model))
    b = batch()
    b["rejected_input_ids"] = b["rejected_input_ids"][:, :-1]
    with pytest.raises(ValueError, match="same"):
        objective.loss(model, b)
    with pytest.raises(ConfigError, match="beta"):
        DPOObjective(beta=0.0, reference="copy", reference_model=model)


# --- Collapse alarms -----------------------------------------------------------------------------------
def steps(n: int, chosen, margin, loss=lambda i: 0.5, seed: int = 0):
    rng = random.Random(seed)
    return [{"type": "step", "step": i, "loss": loss(i), "policy_chosen_logp": chosen(i) + rng.uniform(-0.2, 0.2),
             "reward_margin": margin(i) + rng.uniform(-0.02, 0.02)} for i in range(n)]


def test_alarm_when_chosen_logp_falls_while_margin_rises() -> None:
    monitor = CollapseMonitor(window=20)
    alarms = [a for e in steps(60, lambda i: -10 - 0.5 * i, lambda i: 0.01 * i) for a in monitor.update(e)]
    assert [a["kind"] for a in alarms] == ["chosen_logp_falling"]  # once per episode, not every step
    assert alarms[0]["type"] == "alarm" and alarms[0]["step"] == 19 and "\n" not in alarms[0]["message"]

    healthy = CollapseMonitor(window=20)  # chosen up, margin up: no alarm
    assert not [a for e in steps(60, lambda i: -10 + 0.2 * i, lambda i: 0.01 * i) for a in healthy.update(e)]
    flat = CollapseMonitor(window=20)  # chosen falling but the margin flat: not this alarm
    assert not [a for e in steps(60, lambda i: -10 - 0.5 * i, lambda i: 0.0) for a in flat.update(e)]


def test_collapse_is_read_from_rewards_despite_noisy_per_batch_logps() -> None:
    """Real step events: policy_chosen_logp jumps with each batch's response lengths; chosen_reward / beta
    (the log-ratio against the reference) carries the trend."""
    rng = random.Random(5)
    events = [{"type": "step", "step": i, "loss": 0.5, "beta": 0.1,
               "policy_chosen_logp": rng.uniform(-300, -50),  # pure batch noise
               "chosen_reward": 0.1 * (-0.6 * i + rng.uniform(-0.3, 0.3)),
               "reward_margin": 0.1 * (0.05 * i + rng.uniform(-0.1, 0.1))} for i in range(40)]
    monitor = CollapseMonitor(window=20)
    alarms = [a for e in events for a in monitor.update(e)]
    assert [a["kind"] for a in alarms] == ["chosen_logp_falling"]
    for e in events:  # the same run with the chosen log-ratio rising: no alarm
        e["chosen_reward"] = -e["chosen_reward"]
    assert not [a for e in events for a in CollapseMonitor(window=20).update(e)]


def test_alarm_when_train_loss_near_zero_and_val_accuracy_stalls() -> None:
    def run(val_acc: list[float]) -> list[dict]:
        monitor = CollapseMonitor(window=10, patience=3)
        alarms = []
        for k, acc in enumerate(val_acc):
            for e in steps(10, lambda i: -5.0, lambda i: 1.0, loss=lambda i: 0.01):
                e["step"] += 10 * k
                alarms += monitor.update(e)
            alarms += monitor.update({"type": "eval", "step": 10 * k + 9, "val_reward_accuracy": acc})
        return alarms

    stalled = run([0.55, 0.70, 0.70, 0.69, 0.70])
    assert [a["kind"] for a in stalled] == ["overfitting"] and stalled[0]["step"] == 49
    assert run([0.55, 0.60, 0.65, 0.70, 0.75]) == []


def test_events_are_deduplicated_and_the_step_hook_emits_into_the_trainer() -> None:
    emitted = []
    objective = DPOObjective(beta=0.1, reference="adapters", monitor=CollapseMonitor(window=5, min_logp_drop=1.0))
    trainer = SimpleNamespace(emit=lambda event_type, **f: emitted.append({"type": event_type, **f}))
    for e in steps(8, lambda i: -10 - 0.5 * i, lambda i: 0.05 * i):
        objective.on_step(trainer, e)
        count = len(emitted)
        objective.on_step(trainer, e)  # a second feed of the same step emits nothing new
        assert len(emitted) == count
    assert [(a["type"], a["kind"]) for a in emitted] == [("alarm", "chosen_logp_falling")]
