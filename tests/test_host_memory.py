"""llm_core.host_memory: freed CPU blocks stay in the process and are reused instead of faulted in anew."""
from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

import llm_core
from llm_core import host_memory

glibc_only = pytest.mark.skipif(not host_memory.is_glibc(), reason="the settings are glibc's")

# Forward and backward of an MLP whose activations are 8 and 32 MiB (8192 rows, widths 256 and 1024), as a
# training step allocates and frees them, in the main thread or a worker thread; prints the minor page
# faults of eight steps after two warm-up steps. With the settings an occasional 32 MiB block is still
# faulted in fresh (8,192 faults, seen once or twice in a run); without them every step faults its blocks
# in (20,000-40,000 a step), so eight steps keep the two far apart.
FAULTS_OF_REUSED_BLOCKS = textwrap.dedent("""
    import resource, sys, threading
    import torch
    from llm_core.host_memory import reuse_freed_memory

    if sys.argv[1] == "on":
        print(reuse_freed_memory(), flush=True)
    g = torch.Generator().manual_seed(0)
    mlp = torch.nn.Sequential(torch.nn.Linear(256, 1024), torch.nn.GELU(), torch.nn.Linear(1024, 256))
    x = torch.randn(8192, 256, generator=g)
    def step():
        mlp(x).square().mean().backward()
    def steps(out):
        for _ in range(2):
            step()
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        for _ in range(8):
            step()
        out.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    out = []
    if sys.argv[2] == "thread":
        worker = threading.Thread(target=steps, args=(out,))
        worker.start()
        worker.join()
    else:
        steps(out)
    print(out[0])
""")


def faults_of_reused_blocks(setting: str, where: str) -> tuple[list[str], int]:
    done = subprocess.run([sys.executable, "-c", FAULTS_OF_REUSED_BLOCKS, setting, where],
                          capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise RuntimeError(done.stderr)
    lines = done.stdout.split()
    return lines[:-1], int(lines[-1])


@glibc_only
@pytest.mark.parametrize("where", ["main", "thread"])  # a worker thread too: the TUI trains in one
def test_freed_blocks_are_reused_with_far_fewer_page_faults(where):
    _, faults_off = faults_of_reused_blocks("off", where)
    said, faults_on = faults_of_reused_blocks("on", where)
    if faults_off < 5000:  # 160,000-330,000 here; far fewer where the kernel hands out huge pages
        pytest.skip(f"the steps fault only {faults_off} times without the settings: nothing to compare")
    assert said == ["True"]
    assert faults_on < faults_off // 4, (faults_on, faults_off)  # 13x to all-but-none fewer measured


def test_elsewhere_it_changes_nothing_and_says_so(monkeypatch):
    monkeypatch.setattr(host_memory, "_applied", False)
    monkeypatch.setattr(host_memory.platform, "system", lambda: "Darwin")
    assert host_memory.reuse_freed_memory() is False
    assert host_memory._applied is False


@glibc_only
def test_it_is_idempotent_and_exported():
    assert llm_core.reuse_freed_memory is host_memory.reuse_freed_memory
    assert host_memory.reuse_freed_memory() is True
    assert host_memory.reuse_freed_memory() is True


@pytest.mark.parametrize("setting", [True, False])
def test_the_trainer_applies_it_on_the_cpu_unless_turned_off(tmp_path, monkeypatch, setting):
    from llm_core.training import trainer as trainer_module
    from training_helpers import tiny_config

    calls = []
    monkeypatch.setattr(trainer_module, "reuse_freed_memory", lambda: calls.append("called") or True)
    trainer = trainer_module.Trainer(tiny_config(tmp_path, reuse_freed_memory=setting))
    trainer.close()
    assert calls == (["called"] if setting else [])


def test_workbench_applies_it_before_the_tui_opens(monkeypatch, tmp_path):
    from typer.testing import CliRunner

    import workbench.tui.app as app_module
    from workbench.cli import app

    order = []
    monkeypatch.chdir(tmp_path)  # (make_app's default runs folder)
    monkeypatch.setattr(app_module, "reuse_freed_memory", lambda: order.append("reuse") or True)
    monkeypatch.setattr(app_module.WorkbenchApp, "run", lambda self: order.append("tui"))
    result = CliRunner().invoke(app, [])
    assert result.exit_code == 0, result.output
    assert order == ["reuse", "tui"]
