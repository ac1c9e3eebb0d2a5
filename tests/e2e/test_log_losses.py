"""Log records that never reach their sink are counted and said at shutdown, on stderr.

Real sinks: the access log on /dev/full (every write fails with ENOSPC, as on a full disk),
and an app log on a pipe nobody reads (the queue fills, records are dropped, and the
shutdown deadline passes with records still queued).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.conftest import ROOT, free_port, spawn
from tests.rawhttp import get

TOTALS = re.compile(r"log records lost in this process: (\d+) not written .*?, (\d+) dropped")


def test_access_log_on_a_full_disk_is_counted_and_said_at_shutdown(tmp_path: Path) -> None:
    port = free_port()
    err_path = tmp_path / "stderr"
    with open("/dev/full", "wb") as full, open(err_path, "wb") as err:
        args = ["apps.basic:echo", "--port", str(port), "--access-log"]
        with spawn(args, port=port, stdout=full, stderr=err) as proc:
            for _ in range(5):
                assert get(port, b"/into-the-full-disk").status == 200
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=20) == 0
    text = err_path.read_text()
    assert "cannot write log records to fd 1 ([Errno 28] No space left on device)" in text, text
    totals = TOTALS.search(text)
    assert totals is not None, text
    assert int(totals.group(1)) >= 5 and int(totals.group(2)) == 0


CHILD = textwrap.dedent(
    """
    import json, logging, sys
    from steadyloop.config import LogOptions
    from steadyloop.observe.logsetup import log_losses, setup_logging

    pipeline = setup_logging(LogOptions(queue_records=2000))
    log = logging.getLogger("app")
    log.addHandler(logging.StreamHandler(sys.stdout))
    log.propagate = False
    log.setLevel(logging.INFO)
    for i in range(20000):
        log.info("line %d %s", i, "z" * 100)
    pipeline.shutdown(0.3)
    sys.stderr.write(json.dumps(log_losses()) + "\\n")
    """
)


def test_dropped_and_undelivered_records_are_said_at_shutdown(tmp_path: Path) -> None:
    err_path = tmp_path / "stderr"
    env = dict(os.environ, PYTHONPATH=ROOT)
    with open(err_path, "wb") as err:
        # stdout is a pipe read only after the child exits: its writer is stuck meanwhile.
        proc = subprocess.Popen([sys.executable, "-c", CHILD], stdout=subprocess.PIPE, stderr=err, env=env)
        try:
            assert proc.wait(timeout=30) == 0
            assert proc.stdout is not None
            out = proc.stdout.read()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    text = err_path.read_text()
    totals = TOTALS.search(text)
    assert totals is not None, text
    lost, dropped = int(totals.group(1)), int(totals.group(2))
    assert dropped > 0 and lost > 0
    assert f"queue full: INFO {dropped}" in text
    public = json.loads(text.strip().splitlines()[-1])
    assert public == [lost, {"INFO": dropped}]
    written = len(re.findall(rb"^line \d+ z+$", out, re.M))
    assert written + lost + dropped == 20000
