"""The teacher's top-k cache: the renormalised top-k KD term against the formula written out, k = V equal to
the full KL, a cached run reading instead of running the teacher, exact resume, and mismatches refused."""
from __future__ import annotations

import json
import math

import pytest
import torch

from llm_core.distill import distillation_terms
from llm_core.distill.loss import topk_distillation_terms
from llm_core.distill.topk_cache import CACHE_FILE, MANIFEST_FILE
from llm_core.errors import ConfigError
from llm_core.training import Trainer, read_metrics
from training_helpers import corpus, tiny_config

STUDENT = dict(d_model=16, n_layers=1, n_heads=2, context_length=64)


def _softmax(xs):
    m = max(xs)
    e = [math.exp(x - m) for x in xs]
    return [x / sum(e) for x in e]


def test_topk_term_is_the_renormalised_formula() -> None:
    g = torch.Generator().manual_seed(3)
    student, teacher = torch.randn(1, 2, 6, generator=g), torch.randn(1, 2, 6, generator=g) * 2
    labels = torch.tensor([[2, 5]])
    T, k = 2.0, 3
    top, ids = teacher.topk(k, dim=-1)
    kd, ce = topk_distillation_terms(student, ids, top, labels, T)
    terms = []
    for t in range(2):  # by hand: q over the k kept tokens, the student's softmax over all 6
        q = _softmax([float(z) / T for z in top[0, t]])
        p = _softmax([float(z) / T for z in student[0, t]])
        terms.append(sum(qj * math.log(qj / p[int(j)]) for qj, j in zip(q, ids[0, t])))
    assert float(kd) == pytest.approx(T * T * sum(terms) / 2, rel=1e-5)
    ce_hand = [-math.log(_softmax([float(z) for z in student[0, t]])[int(labels[0, t])]) for t in range(2)]
    assert float(ce) == pytest.approx(sum(ce_hand) / 2, rel=1e-5)
    # k = V: exactly the full forward KL
    full_top, full_ids = teacher.topk(6, dim=-1)
    exact_kd, exact_ce = distillation_terms(student, teacher, labels, T)
    kd_v, ce_v = topk_distillation_terms(student, full_ids, full_top, labels, T)
    assert float(kd_v) == pytest.approx(float(exact_kd), rel=1e-5) and float(ce_v) == pytest.approx(float(exact_ce))


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("teacher")
    corpus(tmp / "corpus.txt", n_chars=2400)
    trainer = Trainer(tiny_config(tmp, name="teacher", context_length=64))
    assert trainer.run()["reason"] == "finished"
    return trainer.run_dir


def config(tmp_path, teacher_dir, **overrides):
    return tiny_config(tmp_path, **{"stage": "distill", "teacher": str(teacher_dir), **STUDENT, **overrides})


def steps(run_dir):
    return [e for e in read_metrics(run_dir) if e["type"] == "step"]


def test_a_cache_of_every_token_trains_like_the_teacher_and_is_read_without_it(tmp_path, teacher_dir,
                                                                                 monkeypatch) -> None:
    live = Trainer(config(tmp_path, teacher_dir, name="live"))
    live.run()
    cached = Trainer(config(tmp_path, teacher_dir, name="write", kd_cache=str(tmp_path / "cache"), kd_topk=257))
    manifest = json.loads((tmp_path / "cache" / MANIFEST_FILE).read_text())
    assert manifest["k"] == 257 and manifest["tail_mass"] == pytest.approx(0.0, abs=1e-5)
    assert set(manifest["splits"]) == {"train", "val"} and cached.objective.teacher is None
    cached.run()
    # k = V: the same KD term as running the teacher, up to the float16 storage of its logits
    for a, b in zip(steps(live.run_dir), steps(cached.run_dir)):
        assert b["kd_loss"] == pytest.approx(a["kd_loss"], rel=2e-3) and b["ce_loss"] == pytest.approx(a["ce_loss"],
                                                                                                       rel=2e-3)
    # A second run reads the cache: the teacher is never loaded
    import llm_core.training.loading as loading

    calls = []
    monkeypatch.setattr(loading, "load_checkpoint", lambda *a, **k: calls.append(a))
    again = Trainer(config(tmp_path, teacher_dir, name="read", kd_cache=str(tmp_path / "cache"), kd_topk=257))
    monkeypatch.undo()
    assert not calls and again.run()["reason"] == "finished"
    assert [e["kd_loss"] for e in steps(again.run_dir)] == [e["kd_loss"] for e in steps(cached.run_dir)]


def test_cached_run_resumes_exactly(tmp_path, teacher_dir) -> None:
    cache = str(tmp_path / "cache")
    full = Trainer(config(tmp_path, teacher_dir, name="full", kd_cache=cache, kd_topk=8))
    full.run()
    part = Trainer(config(tmp_path, teacher_dir, name="part", kd_cache=cache, kd_topk=8))
    part.subscribe(lambda e: e["type"] == "step" and e["step"] == 2 and part.stop())
    assert part.run()["reason"] == "stopped"
    resumed = Trainer.resume(part.run_dir)
    assert resumed.run()["reason"] == "finished"
    assert [(e["step"], e["loss"]) for e in steps(part.run_dir)] == [(e["step"], e["loss"]) for e in steps(full.run_dir)]
    for a, b in zip(full.model.state_dict().values(), resumed.model.state_dict().values()):
        assert torch.equal(a, b)


def test_a_cache_of_another_run_is_refused_and_kept(tmp_path, teacher_dir) -> None:
    cache = tmp_path / "cache"
    Trainer(config(tmp_path, teacher_dir, name="first", kd_cache=str(cache), kd_topk=8))
    before = (cache / CACHE_FILE).read_bytes()
    with pytest.raises(ConfigError, match="k differs") as err:
        Trainer(config(tmp_path, teacher_dir, name="other-k", kd_cache=str(cache), kd_topk=4))
    assert "\n" not in str(err.value) and str(cache / MANIFEST_FILE) in str(err.value)
    other = tmp_path / "other.txt"
    corpus(other, n_chars=3000)
    with pytest.raises(ConfigError, match="the data"):
        Trainer(config(tmp_path, teacher_dir, name="other-data", kd_cache=str(cache), kd_topk=8, data=str(other)))
    assert (cache / CACHE_FILE).read_bytes() == before  # never overwritten


def test_bad_cache_settings_are_one_line_errors(tmp_path, teacher_dir) -> None:
    for overrides, field, needle in [
        (dict(kd_reverse=True), "kd_cache", "reverse KL"),
        (dict(distill_mode="traces"), "kd_cache", "only for distill_mode=logits"),
        (dict(kd_topk=0), "kd_topk", "integer >= 1"),
    ]:
        with pytest.raises(ConfigError) as err:
            config(tmp_path, teacher_dir, kd_cache=str(tmp_path / "c"), **overrides)
        assert err.value.field == field and needle in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(ConfigError, match="more than the vocabulary"):
        Trainer(config(tmp_path, teacher_dir, name="big-k", kd_cache=str(tmp_path / "c"), kd_topk=10_000))
    records = [{"instruction": f"say {w}", "input": "", "output": w} for w in ("cat", "dog", "mat", "sat", "ran", "far", "the", "and", "map", "cap", "bat", "hat")]
    data = tmp_path / "instructions.json"
    data.write_text(json.dumps(records))
    with pytest.raises(ConfigError, match="text windows only"):
        Trainer(config(tmp_path, teacher_dir, name="sft-cache", kd_cache=str(tmp_path / "c"), data=str(data),
                       context_length=192, batch_size=2))
