"""What a uvicorn or gunicorn user meets in the first hour, as a subprocess with real files.

Each test is one of the rough edges of switching: an app that fails to import,
a port that is taken, a factory without --factory, refusals that say what to
type instead, keep-alive off, --env-file and --pid-file, --help.
"""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import ROOT, free_port, spawn, stop, wait_for_port, wait_until
from tests.e2e.test_cli import QUIET, child_env, read_log, run_cli
from tests.rawhttp import RawClient


@pytest.fixture
def logfile() -> Iterator[Any]:
    with tempfile.TemporaryFile("w+") as file:
        yield file


# -- an app that fails to import ------------------------------------------------------------


def test_an_import_error_shows_the_apps_failing_line() -> None:
    result = run_cli(["apps.needs_setting.main:app", "--log-level", "debug"])
    assert result.returncode != 0
    err = result.stderr
    assert "KeyError: 'MISSING_SETTING'" in err
    # The app's frames, outermost first, each with its source line; nothing of the server's.
    main = err.index("apps/needs_setting/main.py:3 in <module>")
    helper = err.index("apps/needs_setting/helpers.py:3 in <module>")
    assert main < helper
    assert 'SETTING = os.environ["MISSING_SETTING"]' in err
    assert "steadyloop/" not in err and "importlib" not in err and "Traceback" not in err


def test_an_import_error_under_a_supervisor_names_the_line_too() -> None:
    result = run_cli(["apps.needs_setting.main:app", "--workers", "2", "--port", "0"])
    assert result.returncode != 0
    assert "apps/needs_setting/helpers.py:3 in <module>" in result.stderr
    assert "no worker could start" in result.stderr


# -- a port that is taken ---------------------------------------------------------------------


def test_a_taken_port_is_one_line_and_the_app_never_half_starts(tmp_path: Path) -> None:
    marker = tmp_path / "shutdown"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli(
            ["apps.basic:with_state", "--port", str(port), "--lifespan", "on"],
            env={"SHUTDOWN_MARKER": str(marker)},
        )
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert f"cannot listen on 127.0.0.1:{port}: Address already in use" in lines[0]
    assert "CancelledError" not in result.stderr
    # Bound before the app started: there was no startup to undo.
    assert not marker.exists()


def test_a_taken_port_under_a_supervisor_is_one_line_too() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli(["apps.basic:with_state", "--port", str(port), "--workers", "2"])
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [
        f"steadyloop: error: cannot listen on 127.0.0.1:{port}: Address already in use"
    ]


# -- a factory given without --factory ----------------------------------------------------------


def test_a_factory_without_the_flag_is_used_with_a_warning(logfile: Any) -> None:
    port = free_port()
    args = ["apps.basic:make_app", "--port", str(port), "--no-access-log"]
    with spawn(args, port=port, stdout=logfile, stderr=logfile):
        assert httpx.get(f"http://127.0.0.1:{port}/").text == "made by factory"
    log = read_log(logfile)
    assert "WARNING" in log and "app factory" in log and "--factory" in log


def test_a_wsgi_app_is_not_taken_for_a_factory(logfile: Any) -> None:
    port = free_port()
    args = ["apps.wsgi_raw:app", "--port", str(port), "--no-access-log"]
    with spawn(args, port=port, stdout=logfile, stderr=logfile):
        assert httpx.get(f"http://127.0.0.1:{port}/").status_code == 200
    assert "factory" not in read_log(logfile)


# -- refusals that say what to type -----------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "hint"),
    [
        (["-w", "4"], "for -w, use --workers N"),
        (["-b", "0.0.0.0:8000"], "for -b, use --host HOST --port PORT, or --uds PATH"),
        (["--bind=unix:/tmp/x"], "for --bind, use --host HOST --port PORT, or --uds PATH"),
        (["--timeout", "30"], "for --timeout, use --worker-timeout SECONDS"),
        (["--prot", "9000"], "did you mean --port?"),
        (["--acess-log"], "did you mean --access-log?"),
    ],
)
def test_an_unknown_flag_gets_the_flag_meant(args: list[str], hint: str) -> None:
    result = run_cli(args)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "unrecognized arguments" in lines[0]
    assert hint in lines[0]


@pytest.mark.parametrize(
    ("env", "line"),
    [
        (
            {"STEADYLOOP_PORT": "abc"},
            "steadyloop: error: environment variable STEADYLOOP_PORT: expected a whole number, not 'abc'",
        ),
        (
            {"STEADYLOOP_TIMEOUT_KEEP_ALIVE": "soon"},
            "steadyloop: error: environment variable STEADYLOOP_TIMEOUT_KEEP_ALIVE: "
            "expected a number of seconds, not 'soon'",
        ),
        (
            {"WEB_CONCURRENCY": "many"},
            "steadyloop: error: environment variable WEB_CONCURRENCY: expected a whole number, not 'many'",
        ),
    ],
)
def test_a_bad_environment_variable_is_named(env: dict[str, str], line: str) -> None:
    result = run_cli([], env)
    assert result.returncode == 2
    assert result.stderr.strip() == line


def test_web_concurrency_sets_the_worker_count(logfile: Any) -> None:
    port = free_port()
    with spawn(
        ["apps.basic:echo", "--port", str(port)],
        port=port,
        env={"WEB_CONCURRENCY": "2"},
        stdout=logfile,
        stderr=logfile,
    ):
        wait_until(lambda: len(re.findall(r"worker \d+ serving on", read_log(logfile))) == 2)
    assert "with 2 workers (Press CTRL+C to quit)" in read_log(logfile)


def test_the_workers_flag_wins_over_web_concurrency(logfile: Any) -> None:
    port = free_port()
    args = ["apps.basic:echo", "--port", str(port), "--workers", "1"]
    with spawn(args, port=port, env={"WEB_CONCURRENCY": "3"}, stdout=logfile, stderr=logfile):
        assert httpx.get(f"http://127.0.0.1:{port}/").status_code == 200
    assert "supervisor" not in read_log(logfile)


# -- keep-alive off, --env-file, --pid-file ---------------------------------------------------


def test_keep_alive_zero_closes_after_each_response(logfile: Any) -> None:
    port = free_port()
    args = ["apps.basic:echo", "--port", str(port), "--timeout-keep-alive", "0", *QUIET]
    with spawn(args, port=port, stdout=logfile, stderr=logfile), RawClient.connect(port) as client:
        response = client.request()
        assert response.status == 200 and response.header(b"connection") == b"close"
        client.assert_closed()


def test_a_negative_keep_alive_is_still_refused() -> None:
    result = run_cli(["--timeout-keep-alive", "-1"])
    assert result.returncode == 2 and "0 turns keep-alive off" in result.stderr


def test_env_file_sets_variables_for_options_and_the_app(tmp_path: Path, logfile: Any) -> None:
    port = free_port()
    env_file = tmp_path / "app.env"
    env_file.write_text(
        "# settings for the app\n"
        f"export STEADYLOOP_PORT={port}\n"
        'GREETING="hello # not a comment"\n'
        "PLAIN=value   # a comment\n"
        "OVERRIDDEN=from the file\n"
    )
    args = ["apps.switching:environment", "--env-file", str(env_file), *QUIET]
    env = {"OVERRIDDEN": "from the environment"}
    with (
        spawn(args, port=port, env=env, stdout=logfile, stderr=logfile),
        httpx.Client(base_url=f"http://127.0.0.1:{port}") as client,
    ):
        assert client.get("/", params={"name": "GREETING"}).json() == "hello # not a comment"
        assert client.get("/", params={"name": "PLAIN"}).json() == "value"
        assert client.get("/", params={"name": "OVERRIDDEN"}).json() == "from the environment"


@pytest.mark.parametrize(
    ("content", "needle"),
    [("NO EQUALS SIGN\n", "app.env:1: expected NAME=value"), ('A="open\n', "unterminated")],
)
def test_a_bad_env_file_is_one_line_naming_the_line(tmp_path: Path, content: str, needle: str) -> None:
    env_file = tmp_path / "app.env"
    env_file.write_text(content)
    result = run_cli(["--env-file", str(env_file)])
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and needle in result.stderr


def test_a_missing_env_file_is_one_line(tmp_path: Path) -> None:
    result = run_cli(["--env-file", str(tmp_path / "nope.env")])
    assert result.returncode == 2 and "No such file or directory" in result.stderr


@pytest.mark.parametrize("workers", ["1", "2"])
def test_pid_file_names_the_serving_process_and_goes_at_exit(
    tmp_path: Path, logfile: Any, workers: str
) -> None:
    port = free_port()
    pid_path = tmp_path / "steadyloop.pid"
    args = ["apps.basic:echo", "--port", str(port), "--workers", workers, "--pid-file", str(pid_path), *QUIET]
    with spawn(args, port=port, stdout=logfile, stderr=logfile) as proc:
        # The supervisor's pid (or the one process's): the one to send HUP or TERM to.
        assert pid_path.read_text() == f"{proc.pid}\n"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
    assert not pid_path.exists()


# -- the watchdog and the launcher script -----------------------------------------------------


def test_the_watchdog_never_takes_the_launcher_script_for_app_code(logfile: Any) -> None:
    """Started as a user starts it, through the console script bin/steadyloop."""
    launcher = Path(sys.executable).parent / "steadyloop"
    assert launcher.exists()
    port = free_port()
    app = "apps.switching:blocks_outside_the_app"
    command = [str(launcher), app, "--port", str(port), "--no-access-log"]
    proc = subprocess.Popen(command, env=child_env(), cwd=ROOT, stdout=logfile, stderr=logfile)
    try:
        wait_for_port(port, proc=proc)
        assert httpx.get(f"http://127.0.0.1:{port}/").text == "scheduled"
        wait_until(lambda: "event loop blocked" in read_log(logfile))
    finally:
        stop(proc)
    log = read_log(logfile)
    assert "bin/steadyloop" in log  # the dump shows it...
    report = next(line for line in log.splitlines() if "event loop blocked" in line)
    assert ", at " not in report  # ...but no app frame is claimed: none was on the stack
    assert not [line for line in log.splitlines() if line.lstrip().startswith("> bin/steadyloop")]
