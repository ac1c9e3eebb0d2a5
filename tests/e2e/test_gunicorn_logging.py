"""gunicorn's logging settings reach the steadyloop worker class: a user's gunicorn command
line writes the same files, in the same format, as it did with gunicorn's own workers."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from conftest import ROOT, free_port, stop, wait_for_port, wait_until

pytest.importorskip("gunicorn")


def run_gunicorn(port: int, *args: str) -> subprocess.Popen[bytes]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([ROOT, os.path.join(ROOT, "tests"), env.get("PYTHONPATH", "")])
    argv = [sys.executable, "-m", "gunicorn", "-k", "steadyloop.integrations.gunicorn.SteadyloopWorker"]
    argv += ["-b", f"127.0.0.1:{port}", "--no-control-socket", *args, "apps.workers_app:app"]
    return subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def test_access_logfile_format_and_error_logfile_are_honoured(tmp_path: Path) -> None:
    access, errors = tmp_path / "access.log", tmp_path / "error.log"
    port = free_port()
    fmt = '%(h)s "%(r)s" %(s)s %({x-trace}i)s %({content-type}o)s %(a)s 100%%'
    proc = run_gunicorn(
        port, "--access-logfile", str(access), "--access-logformat", fmt, "--error-logfile", str(errors)
    )
    try:
        wait_for_port(port, proc=proc)
        headers = {"x-trace": "abc-123", "user-agent": "switching-test"}
        assert httpx.get(f"http://127.0.0.1:{port}/logged?q=1", headers=headers).status_code == 200
        wait_until(lambda: access.exists() and "/logged" in access.read_text())
        wait_until(lambda: "serving on" in errors.read_text())
    finally:
        stop(proc, timeout=20)
    (line,) = [x for x in access.read_text().splitlines() if "/logged" in x]
    assert line.startswith("127.0.0.1:")
    assert line.endswith('"GET /logged?q=1 HTTP/1.1" 200 abc-123 text/plain switching-test 100%')
    # The server's records went to the error log file, in steadyloop's own format.
    assert "[INFO] worker " in errors.read_text()


def test_no_access_logfile_means_no_access_log(tmp_path: Path) -> None:
    errors = tmp_path / "error.log"
    port = free_port()
    proc = run_gunicorn(port, "--error-logfile", str(errors))
    try:
        wait_for_port(port, proc=proc)
        assert httpx.get(f"http://127.0.0.1:{port}/quiet").status_code == 200
    finally:
        stop(proc, timeout=20)
    assert "/quiet" not in errors.read_text()


def test_a_gunicorn_atom_without_a_counterpart_is_named(tmp_path: Path) -> None:
    from steadyloop.config import ConfigError
    from steadyloop.integrations.gunicorn import gunicorn_access_format

    assert gunicorn_access_format('%(h)s "%(r)s" %(L)s') == '%h "%r" %{s}T'
    with pytest.raises(ConfigError, match=r"%\(p\)s"):
        gunicorn_access_format("%(p)s")


def test_a_rotated_access_logfile_is_reopened(tmp_path: Path) -> None:
    access = tmp_path / "access.log"
    port = free_port()
    proc = run_gunicorn(port, "--access-logfile", str(access))
    try:
        wait_for_port(port, proc=proc)
        assert httpx.get(f"http://127.0.0.1:{port}/before").status_code == 200
        wait_until(lambda: access.exists() and "/before" in access.read_text())
        access.rename(tmp_path / "access.log.1")  # what logrotate does
        assert httpx.get(f"http://127.0.0.1:{port}/after").status_code == 200
        wait_until(lambda: access.exists() and "/after" in access.read_text())
    finally:
        stop(proc, timeout=20)
    assert "/after" not in (tmp_path / "access.log.1").read_text()
