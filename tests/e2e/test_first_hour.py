"""What a uvicorn or gunicorn user meets in the first hour, as a subprocess with real files.

Each test is one of the rough edges of switching: an app that fails to import,
a port that is taken, a factory without --factory, refusals that say what to
type instead, keep-alive off, --env-file and --pid-file, --help.
"""

from __future__ import annotations

from tests.e2e.test_cli import QUIET, logfile, read_log, run_cli  # noqa: F401  (fixture)

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
