"""Which build runs (compiled with mypyc, or pure Python), and that `--version` says so.

CI runs the suite twice: on the editable install (pure Python) and on a compiled install
(.ci/run). STEADYLOOP_EXPECT_BUILD=compiled or =pure makes this file check that the run
got the build it was meant to test, in this process and in a server subprocess.
"""

from __future__ import annotations

import ast
import os
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
