"""--log-config as JSON, YAML and INI, applied in a real child process."""

from __future__ import annotations

import json
import os
import textwrap

import pytest

from steadyloop.config import ConfigError, LogOptions
from steadyloop.observe.logsetup import level_number, load_config_file
from tests.observe.test_logging_process import Children, children, spawn

__all__ = ["children"]  # the fixture, re-used

DICT_CONFIG = {
    "version": 1,
    "formatters": {"f": {"format": "CFG %(name)s %(levelname)s %(message)s"}},
    "handlers": {
        "out": {"class": "logging.StreamHandler", "formatter": "f", "stream": "ext://sys.stdout"}
    },
    "loggers": {"app": {"handlers": ["out"], "level": "INFO", "propagate": False}},
}

YAML_CONFIG = """
version: 1
formatters:
  f:
    format: "CFG %(name)s %(levelname)s %(message)s"
handlers:
  out:
    class: logging.StreamHandler
    formatter: f
    stream: ext://sys.stdout
loggers:
  app:
    handlers: [out]
    level: INFO
    propagate: false
"""

INI_CONFIG = """
[loggers]
keys=root,app

[handlers]
keys=out

[formatters]
keys=f

[logger_root]
level=WARNING
handlers=

[logger_app]
level=INFO
handlers=out
propagate=0
qualname=app

[handler_out]
class=StreamHandler
formatter=f
args=(sys.stdout,)

[formatter_f]
format=CFG %(name)s %(levelname)s %(message)s
"""

SCENARIO = """
app = logging.getLogger("app")
app.debug("not shown")
app.info("configured %d", 1)
logging.getLogger("steadyloop.error").info("server on")
tell(event="types", app=type(app.handlers[0]).__name__)
pipeline.shutdown(10)
"""


@pytest.mark.parametrize(
    "name, content",
    [
        ("log.json", json.dumps(DICT_CONFIG)),
        ("log.yaml", YAML_CONFIG),
        ("log.yml", YAML_CONFIG),
        ("log.ini", INI_CONFIG),
        ("logging.conf", INI_CONFIG),
    ],
)
def test_config_file_formats(children: Children, name: str, content: str) -> None:
    path = os.path.join(children.directory, name)
    with open(path, "w") as f:
        f.write(textwrap.dedent(content))
    child = spawn(children, SCENARIO, handler=False, options={"config_file": path})
    assert child.event("types")["app"] == "QueuedHandler"
    out, err = child.output()
    assert out == b"CFG app INFO configured 1\n"
    # dictConfig disables "existing loggers" by default; the server's stay on.
    assert b"[INFO] server on" in err


def test_config_can_route_the_access_log(children: Children) -> None:
    target = os.path.join(children.directory, "access.log")
    config = {
        "version": 1,
        "handlers": {"file": {"class": "logging.FileHandler", "filename": target}},
        "loggers": {"steadyloop.access": {"handlers": ["file"], "propagate": False}},
    }
    path = os.path.join(children.directory, "log.json")
    with open(path, "w") as f:
        json.dump(config, f)
    child = spawn(
        children,
        """
        from steadyloop.observe.access import AccessLog
        access = AccessLog(pipeline, "%m %U %s")
        for i in range(100):
            access.log("c", "GET", f"/n/{i}", "1.1", 200, 0, 0.001, "", [], [])
        pipeline.shutdown(10)
        """,
        handler=False,
        options={"config_file": path},
    )
    out, _ = child.output()
    assert out == b""
    with open(target) as f:
        assert f.read().splitlines() == [f"GET /n/{i} 200" for i in range(100)]


def test_unparsable_config_is_a_one_line_config_error(tmp_path: object) -> None:
    path = os.path.join(str(tmp_path), "bad.json")
    with open(path, "w") as f:
        f.write('{"version": 1,')  # fails before logging is touched, so safe in-process
    with pytest.raises(ConfigError) as info:
        load_config_file(path)
    assert str(info.value).startswith(f"--log-config {path}: ")
    assert "\n" not in str(info.value)


def test_invalid_config_is_a_config_error(children: Children) -> None:
    path = os.path.join(children.directory, "bad.json")
    with open(path, "w") as f:
        f.write('{"version": 1, "handlers": {"x": {"class": "no.such.Handler"}}}')
    child = spawn(children, "pass", handler=False, options={"config_file": path})
    _, err = child.output()
    assert child.proc.returncode == 1
    last = err.decode().strip().splitlines()[-1]
    assert last.startswith(f"steadyloop.config.ConfigError: --log-config {path}: ")


def test_levels() -> None:
    assert level_number("trace") == 5
    assert level_number("INFO") == 20
    assert level_number("critical") == 50
    with pytest.raises(ConfigError):
        level_number("chatty")
    assert LogOptions().level == "info"
