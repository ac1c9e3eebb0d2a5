"""--help, the README's option table and the docs a user is pointed to, as a user finds them."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from steadyloop.options import GROUPS, default_of
from tests.conftest import ROOT
from tests.e2e.test_cli import run_cli


def help_text() -> str:
    result = run_cli(["--help"])
    assert result.returncode == 0
    return result.stdout


def test_help_is_grouped_like_the_readme_table() -> None:
    text = help_text()
    assert text.startswith("usage: steadyloop [OPTIONS] [APP]\n")
    headings = [line[:-1] for line in text.splitlines() if re.fullmatch(r"[A-Za-z][A-Za-z0-9/]*:", line)]
    assert headings == ["options", *(title for title, _ in GROUPS)]


def test_help_shows_no_internal_metavars() -> None:
    # Metavars are words a user reads (N, SECONDS, FILE), never a dotted or snake_case name.
    metavars = re.findall(r"--[a-z-]+ ([A-Z][A-Za-z_.:|]*)", help_text())
    assert metavars
    assert not [m for m in metavars if "_" in m or "." in m]


@pytest.mark.parametrize(
    ("flag", "default", "shown"),
    [
        ("--port", 8000, "(default: 8000)"),
        ("--timeout-keep-alive", 5.0, "(default: 5)"),
        ("--block-threshold", 0.1, "(default: 0.1)"),
        ("--access-log", True, "(default: on)"),
        ("--log-overflow", "drop", "(default: drop)"),
    ],
)
def test_help_defaults_are_configs_defaults(flag: str, default: object, shown: str) -> None:
    option = next(o for _, group in GROUPS for o in group if o.flag == flag)
    assert default_of(option) == default
    block = help_text().split(f"  {flag}", 1)[1].split("\n  --", 1)[0]
    assert shown in " ".join(block.split())


def readme() -> str:
    return Path(ROOT, "README.md").read_text()


def test_the_readme_option_table_lists_every_option_in_its_group() -> None:
    rows = dict(re.findall(r"^\| ([A-Za-z][A-Za-z0-9/]*) \| (.*) \|$", readme(), re.M))
    for title, options in GROUPS:
        assert re.findall(r"`(--[a-z0-9-]+)", rows[title]) == [o.flag for o in options], title


@pytest.mark.parametrize("page", ["README.md", *sorted(p.name for p in Path(ROOT, "docs").glob("*.md"))])
def test_every_link_in_the_docs_leads_to_a_file_in_the_repository(page: str) -> None:
    path = Path(ROOT, page) if page == "README.md" else Path(ROOT, "docs", page)
    text = path.read_text()
    targets = re.findall(r"\]\(([^)#\s]+)", text)
    for target in targets:
        assert "://" not in target, f"{page} points outside the repository: {target}"
        resolved = (path.parent / target).resolve()
        assert resolved.exists(), f"{page} links to {target}, which does not exist"
        assert str(resolved).startswith(ROOT), f"{page} points outside the repository: {target}"
    # Paths in backquotes that climb out of the repository are links too, in all but name.
    assert "../shared" not in text


def test_the_wheel_ships_the_guides_and_the_deployment_files(tmp_path: Path) -> None:
    if not Path(ROOT, "steadyloop").is_dir():
        pytest.skip("no sources beside the tests (the run against an installed, compiled build)")
    # Built from a copy, so that the build leaves nothing in the checkout.
    source = tmp_path / "source"
    for name in ("steadyloop", "docs", "deploy"):
        shutil.copytree(Path(ROOT, name), source / name, ignore=shutil.ignore_patterns("__pycache__", "*.so"))
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy(Path(ROOT, name), source / name)
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(source)]
    # Pure Python: what is shipped does not depend on compiling, which takes a minute.
    env = dict(os.environ, STEADYLOOP_PURE_PYTHON="1")
    result = subprocess.run(command, capture_output=True, text=True, timeout=180, env=env)
    assert result.returncode == 0, result.stderr
    (wheel,) = tmp_path.glob("steadyloop-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    shipped = {
        n.split("/data/share/doc/steadyloop/", 1)[1] for n in names if "/data/share/doc/steadyloop/" in n
    }
    assert {"README.md", "logging.md", "operations.md", "watchdog.md", "why.md", "deployment.md"} <= shipped
    assert {"deploy/nginx.conf", "deploy/Dockerfile", "deploy/kubernetes/deployment.yaml"} <= shipped
