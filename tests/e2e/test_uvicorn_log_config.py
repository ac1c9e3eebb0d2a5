"""A uvicorn --log-config file carries over: its logger names and its formatters work as they did."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port, spawn, wait_until

uvicorn_config = pytest.importorskip("uvicorn.config")


def serve_once(tmp_path: Path, config_file: Path) -> tuple[str, str]:
    port = free_port()
    out, err = tmp_path / "stdout", tmp_path / "stderr"
    with out.open("w") as stdout, err.open("w") as stderr:
        args = ["apps.basic:echo", "--port", str(port), "--log-config", str(config_file)]
        with spawn(args, port=port, stdout=stdout, stderr=stderr):
            assert httpx.get(f"http://127.0.0.1:{port}/items?x=1").status_code == 200
            wait_until(lambda: "/items?x=1" in out.read_text())
    return out.read_text(), err.read_text()


def test_uvicorns_own_logging_config_renders_as_under_uvicorn(tmp_path: Path) -> None:
    config = json.loads(json.dumps(uvicorn_config.LOGGING_CONFIG))
    config["formatters"]["default"]["use_colors"] = False
    config["formatters"]["access"]["use_colors"] = False
    path = tmp_path / "uvicorn-logging.json"
    path.write_text(json.dumps(config))
    stdout, stderr = serve_once(tmp_path, path)
    # uvicorn's AccessFormatter, fed what it reads: 'INFO:     127.0.0.1:PORT - "GET ..." 200 OK'.
    assert re.search(r'^INFO: +127\.0\.0\.1:\d+ - "GET /items\?x=1 HTTP/1\.1" 200 OK$', stdout, re.M), stdout
    # The server's records through uvicorn's DefaultFormatter, and the notice of the mapping.
    assert re.search(r"^INFO: +steadyloop [\d.]+ serving on http://127\.0\.0\.1:\d+", stderr, re.M), stderr
    assert "uvicorn's loggers uvicorn, uvicorn.error, uvicorn.access configure steadyloop's" in stderr


def test_an_ini_config_naming_uvicorn_access_is_used(tmp_path: Path) -> None:
    path = tmp_path / "logging.ini"
    path.write_text(
        "[loggers]\nkeys=root,access\n\n"
        "[handlers]\nkeys=out\n\n"
        "[formatters]\nkeys=plain\n\n"
        "[logger_root]\nlevel=WARNING\nhandlers=\n\n"
        "[logger_access]\nlevel=INFO\nhandlers=out\nqualname=uvicorn.access\npropagate=0\n\n"
        "[handler_out]\nclass=StreamHandler\nformatter=plain\nargs=(sys.stdout,)\n\n"
        "[formatter_plain]\nformat=ACCESS %(message)s\n"
    )
    stdout, _ = serve_once(tmp_path, path)
    assert re.search(r'^ACCESS 127\.0\.0\.1:\d+ - "GET /items\?x=1 HTTP/1\.1" 200$', stdout, re.M), stdout


def test_a_config_of_our_own_names_keeps_our_access_format(tmp_path: Path) -> None:
    config = {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"plain": {"format": "OURS %(message)s"}},
        "handlers": {
            "out": {"class": "logging.StreamHandler", "formatter": "plain", "stream": "ext://sys.stdout"}
        },
        "loggers": {"steadyloop.access": {"handlers": ["out"], "level": "INFO", "propagate": False}},
    }
    path = tmp_path / "ours.json"
    path.write_text(json.dumps(config))
    stdout, stderr = serve_once(tmp_path, path)
    assert re.search(r'^OURS 127\.0\.0\.1:\d+ - - \[.*\] "GET /items\?x=1 HTTP/1\.1" 200 ', stdout, re.M), (
        stdout
    )
    assert "uvicorn's loggers" not in stderr
