"""--reload end to end: a real file in a temporary directory, real edits, a real server.

The app module lives in tmp_path and is imported with --app-dir; each test edits it
and waits for the log to say what happened, then asks the server what it serves now.
"""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
from apps.workers_support import LogTail
from conftest import free_port, spawn, stop

READY = r"worker (\d+) is ready"

APP_SOURCE = """
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    body = VERSION.encode()
    await send({{"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", str(len(body)).encode())]}})
    await send({{"type": "http.response.body", "body": body}})

VERSION = {version!r}
"""


def write_app(path: Path, version: str) -> None:
    path.write_text(APP_SOURCE.format(version=version))


@contextlib.contextmanager
def reloading(tmp_path: Path, *extra: str) -> Iterator[tuple[LogTail, str]]:
    module = tmp_path / "reloadme.py"
    write_app(module, "v1")
    port = free_port()
    argv = [
        "reloadme:app",
        "--port",
        str(port),
        "--app-dir",
        str(tmp_path),
        "--reload",
        "--reload-dir",
        str(tmp_path),
        "--no-access-log",
        "--lifespan",
        "off",
        *extra,
    ]
    with spawn(argv, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True) as proc:
        assert proc.stderr is not None
        tail = LogTail(proc.stderr)
        tail.wait_for(r"watching .* for changes")  # before it, an edit could go unseen
        try:
            yield tail, f"http://127.0.0.1:{port}"
        finally:
            stop(proc, timeout=20)  # before the tail: it reads until the pipe closes
            tail.join()


def test_editing_a_file_restarts_the_worker(tmp_path: Path) -> None:
    with reloading(tmp_path) as (log, url):
        first = log.wait_for(READY).group(1)
        assert httpx.get(url, timeout=5).text == "v1"
        mark = log.mark()
        write_app(tmp_path / "reloadme.py", "v2")
        log.wait_for(r"detected changes in .*reloadme\.py: reloading", 15, mark)
        second = log.wait_for(READY, 15, mark).group(1)
        log.wait_for(rf"worker {first} exited with code 0", 15, mark)
        assert second != first
        assert httpx.get(url, timeout=5).text == "v2"


def test_a_syntax_error_is_reported_and_the_next_edit_recovers(tmp_path: Path) -> None:
    with reloading(tmp_path) as (log, url):
        log.wait_for(READY)
        mark = log.mark()
        (tmp_path / "reloadme.py").write_text("def broken(:\n")
        log.wait_for(r"SyntaxError", 15, mark)
        log.wait_for(r"waiting for a file change", 15, mark)
        # The previous worker still serves the previous code meanwhile.
        assert httpx.get(url, timeout=5).text == "v1"
        mark = log.mark()
        write_app(tmp_path / "reloadme.py", "v3")
        log.wait_for(READY, 15, mark)
        assert httpx.get(url, timeout=5).text == "v3"


def test_excluded_and_unwatched_files_do_not_reload(tmp_path: Path) -> None:
    with reloading(tmp_path, "--reload-exclude", "skip_*.py", "--reload-include", "*.toml") as (log, _url):
        log.wait_for(READY)
        mark = log.mark()
        (tmp_path / "skip_me.py").write_text("x = 1\n")
        (tmp_path / "notes.txt").write_text("not watched\n")
        (tmp_path / "settings.toml").write_text("watched = true\n")
        match = log.wait_for(r"detected changes in (.*): reloading", 15, mark)
        assert match.group(1) == "settings.toml" or match.group(1).endswith("/settings.toml")
        assert "skip_me" not in log.text() and "notes.txt" not in log.text()
        log.wait_for(READY, 15, mark)


def test_reload_filter_rules() -> None:
    from steadyloop.supervisor.reload import ReloadFilter

    flt = ReloadFilter.from_options(["*.toml"], ["tests/*", "skip_*.py"])
    assert flt.wants("app/views.py")
    assert flt.wants("/srv/app/settings.toml")
    assert not flt.wants("notes.txt")
    assert not flt.wants("app/skip_this.py")
    assert not flt.wants("tests/test_views.py")
    assert not flt.wants("app/__pycache__/views.py")
    assert not flt.wants(".venv/lib/site.py")
    assert not flt.wants("app/.views.py.swp")
    assert not flt.wants("app/views.pyc")
