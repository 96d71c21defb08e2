"""Two CPU processes (gloo DDP, batch 2 each) take the same steps as one process with batch 4."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch.distributed as dist

import llm_core.model
from llm_core.embedding import column_major
from llm_core.training import Trainer, read_metrics
from training_helpers import tiny_config

ROOT = Path(__file__).resolve().parents[1]

WORKER = """
import json, sys
sys.path.insert(0, {tests!r})
import llm_core.model
llm_core.model.COLUMN_MAJOR_MIN_VOCAB = {min_vocab!r}
from pathlib import Path
from training_helpers import tiny_config
from llm_core.training import Trainer
from llm_core.training.distributed import shutdown
trainer = Trainer(tiny_config(Path({tmp!r}), name="ddp", batch_size=2, max_steps=3))
assert trainer.ctx.world_size == 2
trainer.run()
losses = [e["loss"] for e in trainer.history if e["type"] == "step"]
Path({tmp!r}, f"rank{{trainer.ctx.rank}}.json").write_text(json.dumps(losses))
shutdown(trainer.ctx)
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="no gloo backend")
@pytest.mark.parametrize("layout", ["row-major", "column-major"])
def test_two_processes_match_one_with_the_same_global_batch(tmp_path, monkeypatch, layout: str) -> None:
    """Both layouts of the tied embedding (`llm_core.embedding`; the tiny model's vocabulary is row-major
    unless the threshold is lowered): DDP's buckets take the column-major gradient as it is."""
    min_vocab = 1 if layout == "column-major" else llm_core.model.COLUMN_MAJOR_MIN_VOCAB
    monkeypatch.setattr(llm_core.model, "COLUMN_MAJOR_MIN_VOCAB", min_vocab)
    single = Trainer(tiny_config(tmp_path, name="single", batch_size=4, max_steps=3))
    assert column_major(single.model.tok_emb.weight) == (layout == "column-major")
    single.run()
    expected = [e["loss"] for e in single.history if e["type"] == "step"]

    script = WORKER.format(tests=str(ROOT / "tests"), tmp=str(tmp_path), min_vocab=min_vocab)
    port = str(_free_port())
    procs = []
    for rank in range(2):
        env = {**os.environ, "PYTHONPATH": str(ROOT), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port,
               "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": "2", "OMP_NUM_THREADS": "1"}
        procs.append(subprocess.Popen([sys.executable, "-c", script], env=env, cwd=tmp_path,
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    outputs = [p.communicate(timeout=240)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outputs

    rank0 = json.loads((tmp_path / "rank0.json").read_text())
    rank1 = json.loads((tmp_path / "rank1.json").read_text())
    assert rank0 == rank1  # the reported loss is the all-reduced mean
    assert rank0 == pytest.approx(expected, rel=1e-4, abs=1e-5)
    assert rank0[0] != rank0[-1]  # it trained
    # Only rank 0 wrote the run folder, once.
    logged = [e["loss"] for e in read_metrics(tmp_path / "runs" / "ddp") if e["type"] == "step"]
    assert logged == rank0
    assert (tmp_path / "runs" / "ddp" / "checkpoints" / "step-00000003").is_dir()
