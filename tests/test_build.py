"""Which build runs (compiled with mypyc, or pure Python), and that `--version` says so.

CI runs the suite twice: on the editable install (pure Python) and on a compiled install
(.ci/run). STEADYLOOP_EXPECT_BUILD=compiled or =pure makes this file check that the run
got the build it was meant to test, in this process and in a server subprocess.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path

import pytest

from steadyloop import build
from tests.conftest import ROOT

EXPECTED = os.environ.get("STEADYLOOP_EXPECT_BUILD", "")


def _version() -> str:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([ROOT, os.path.join(ROOT, "tests"), env.get("PYTHONPATH", "")])
    done = subprocess.run(
        [sys.executable, "-m", "steadyloop", "--version"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout


def test_version_says_which_build_runs() -> None:
    import steadyloop.protocols.http1.connection as connection

    compiled = connection.__file__.endswith(tuple(EXTENSION_SUFFIXES))
    out = _version()
    assert out.startswith("steadyloop ")
    # A server subprocess imports what this process imports.
    assert out.strip().endswith("compiled (mypyc)" if compiled else "pure Python"), out
    assert build.describe() == ("compiled (mypyc)" if compiled else "pure Python")


@pytest.mark.skipif(EXPECTED not in ("compiled", "pure"), reason="STEADYLOOP_EXPECT_BUILD not set")
def test_the_run_tests_the_build_it_means_to() -> None:
    if EXPECTED == "compiled":
        assert build.compiled_modules() == list(build.HOT_MODULES)
        assert _version().strip().endswith("compiled (mypyc)")
    else:
        assert build.compiled_modules() == []
        assert _version().strip().endswith("pure Python")


def test_the_module_list_is_the_one_setup_compiles() -> None:
    setup = Path(ROOT, "setup.py")
    if not setup.exists():
        pytest.skip("no setup.py beside the tests (a run against an installed package)")
    tree = ast.parse(setup.read_text())
    paths = next(
        ast.literal_eval(node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Assign)
        and any(isinstance(target, ast.Name) and target.id == "HOT_MODULES" for target in node.targets)
    )
    assert [p.removesuffix(".py").replace("/", ".") for p in paths] == list(build.HOT_MODULES)


def test_an_editable_install_that_does_not_compile_removes_compiled_modules_left_in_the_tree(
    tmp_path: Path,
) -> None:
    # A .so left by an earlier STEADYLOOP_COMPILE=1 in-place build is imported before the
    # .py beside it: a pure editable install must not leave it there to run stale code.
    if not Path(ROOT, "steadyloop").is_dir():
        pytest.skip("no sources beside the tests (the run against an installed, compiled build)")
    source = tmp_path / "source"
    shutil.copytree(
        Path(ROOT, "steadyloop"), source / "steadyloop", ignore=shutil.ignore_patterns("__pycache__", "*.so")
    )
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy(Path(ROOT, name), source / name)
    suffix = EXTENSION_SUFFIXES[0]
    stale = [source / "steadyloop" / "http" / f"parser{suffix}", source / f"steadyloop__mypyc{suffix}"]
    kept = source / "steadyloop" / "observe" / f"unrelated{suffix}"  # not a module the build compiles
    for path in [*stale, kept]:
        path.write_bytes(b"")
    env = {k: v for k, v in os.environ.items() if k not in ("STEADYLOOP_COMPILE", "STEADYLOOP_PURE_PYTHON")}
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    done = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--no-deps", "-e", str(source)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert [path for path in stale if path.exists()] == []
    assert kept.exists()
