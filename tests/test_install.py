"""A wheel, installed into a fresh virtual environment, trains and opens the app from another folder.

The checkout is copied (so building never writes build/ or *.egg-info into it), built into a wheel with this
interpreter's setuptools, and installed with --no-deps into a new venv whose only other path is this
environment's site-packages (a plain path line in a .pth file: torch and the other dependencies are reused,
but this environment's editable install of llm_core is not, because .pth files inside an added path are
not processed). The commands then run from an empty folder, so nothing can be found through the checkout.
"""
from __future__ import annotations

import ast
import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
IGNORED = shutil.ignore_patterns(".git", ".venv", "runs", "build", "dist", "*.egg-info", "__pycache__",
                                 ".pytest_cache", "tests")

APP_PROBE = """
import asyncio
from workbench.tui.app import make_app

async def main():
    app = make_app()
    async with app.run_test(size=(110, 32)) as pilot:
        await pilot.pause()
        print("screen:", type(app.screen).__name__, "rules:", len(app.stylesheet.rules))

asyncio.run(main())
"""


def run(args: list[str], cwd: Path, env: dict[str, str], timeout: int = 300) -> str:
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict[str, str]]:
    tmp = tmp_path_factory.mktemp("install")
    source = tmp / "source"
    shutil.copytree(ROOT, source, ignore=IGNORED)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(tmp / "wheels"),
         str(source)], tmp, env)
    (wheel,) = (tmp / "wheels").glob("llm_workbench-*.whl")
    venv = tmp / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", str(venv)], tmp, env, timeout=120)
    python = venv / "bin" / "python"
    purelib = Path(run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], tmp, env).strip())
    (purelib / "reuse_outer_env.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps", str(wheel)], tmp, env)
    elsewhere = tmp / "elsewhere"
    elsewhere.mkdir()
    return venv, elsewhere, env


def test_wheel_ships_the_default_experiment_and_stylesheet(installed: tuple[Path, Path, dict[str, str]]) -> None:
    venv, elsewhere, env = installed
    out = run([str(venv / "bin" / "python"), "-c",
               "import llm_core, workbench.tui.app as a; from llm_core.experiment import default_paths; "
               "from pathlib import Path; p = default_paths(); "
               "print(llm_core.__file__); print(all(v.exists() for v in p.values())); "
               "print((Path(a.__file__).parent / 'workbench.tcss').exists())"], elsewhere, env)
    origin, data_ok, css_ok = out.split()
    assert origin.startswith(str(venv)), f"llm_core imported from {origin}, not the wheel"
    assert data_ok == "True" and css_ok == "True"


def test_wheel_ships_the_cpu_kernels_sources(installed: tuple[Path, Path, dict[str, str]], tmp_path: Path) -> None:
    """The C sources are package data, so an installed package builds the kernels where a checkout does."""
    venv, elsewhere, env = installed
    out = run([str(venv / "bin" / "python"), "-c",
               "from llm_core import cpu_kernels; from llm_core.cpu_kernels import build; "
               "print(all(f.exists() for f in build.SOURCES + build.HEADERS), build.HERE.is_relative_to(__import__('sys').prefix)); "
               "print(build.unsupported_reason() is None and build.find_compiler() is not None); "
               "print(cpu_kernels.status())"], elsewhere, {**env, "LLM_WORKBENCH_CACHE": str(tmp_path)})
    shipped, can_build, status = out.splitlines()
    assert shipped == "True True", out
    if can_build == "True":  # an AVX-512 Linux CPU with a compiler: the wheel's source builds
        assert status.startswith("CPU kernels: built with"), status


def test_installed_workbench_trains_and_opens_the_app(installed: tuple[Path, Path, dict[str, str]]) -> None:
    venv, elsewhere, env = installed
    out = run([str(venv / "bin" / "workbench"), "train", "--set", "max_steps=2", "--set", "name=smoke",
               "--set", "eval_every=2", "--estimate-steps", "0"], elsewhere, env)
    assert "finished at step 2" in out
    assert (elsewhere / "runs" / "smoke" / "config.json").exists()
    assert any((elsewhere / "runs" / "smoke" / "checkpoints").glob("step-*"))
    out = run([str(venv / "bin" / "python"), "-c", APP_PROBE], elsewhere, env, timeout=120)
    assert "rules:" in out and int(out.split("rules:")[1]) > 0, out


def test_generate_writes_only_where_told(installed: tuple[Path, Path, dict[str, str]]) -> None:
    venv, elsewhere, env = installed
    result = subprocess.run([str(venv / "bin" / "workbench"), "data", "generate"], cwd=elsewhere, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode != 0 and "--out" in result.stdout + result.stderr


def _distribution(name: str) -> str:
    """A distribution's name as PEP 503 normalises it (`PyYAML` -> `pyyaml`, `a_b.c` -> `a-b-c`)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _imported_modules(source: str) -> set[str]:
    """The top-level modules a file imports absolutely (`import a.b`, `from a.b import c`: "a")."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_runtime_dependencies_are_declared() -> None:
    """Every third-party module the shipped packages import, and numpy where they call `Tensor.numpy()`, is in
    pyproject's runtime dependencies: an installed package gets only those (the wheel test above reuses this
    environment's packages, so it cannot see a missing one: a user's `pip install` without numpy ended
    `workbench train` at its first checkpoint, in safetensors' save, and failed DPO's reference cache and
    the PEFT export with "Numpy is not available")."""
    requirements = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    declared = {_distribution(re.match(r"[A-Za-z0-9_.-]+", r).group(0)) for r in requirements}
    providers = importlib.metadata.packages_distributions()  # top-level module -> distributions
    ours = {"llm_core", "workbench"}
    needed: dict[str, str] = {}  # distribution -> a file that needs it
    for package in ours:
        for path in sorted((ROOT / package).rglob("*.py")):
            source, where = path.read_text(), str(path.relative_to(ROOT))
            for top in _imported_modules(source) - ours - set(sys.stdlib_module_names):
                for dist in providers.get(top, [top]):
                    needed.setdefault(_distribution(dist), where)
            if ".numpy()" in source or "safetensors.torch" in source:  # safetensors' save imports numpy
                needed.setdefault("numpy", where)
    optional = {"tensorboard", "wandb"}  # the trackers' extras: imported only when a run asks for them
    missing = {d: f for d, f in needed.items() if d not in declared and d not in optional}
    assert not missing, f"used but not in pyproject's dependencies: {missing}"
