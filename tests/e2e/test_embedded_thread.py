"""steadyloop served from a thread that is not the main one (tests, notebooks, frameworks).

Signals stay with the embedding program: the server installs no handler and is stopped by
the caller (here: the caller's own SIGTERM handler asks the server to exit).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from tests.conftest import ROOT, free_port, stop, wait_for_port
from tests.rawhttp import get

EMBEDDER = textwrap.dedent(
    """
    import signal, sys, threading
    import steadyloop
    from steadyloop.options import build_config
    from steadyloop.server.serve import serve_process

    port, loop, how = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    options = dict(host="127.0.0.1", port=port, loop=loop, access_log=False)
    servers, codes = [], []

    def serve():
        if how == "run":
            codes.append(steadyloop.run("apps.basic:echo", **options))
        else:
            config = build_config("apps.basic:echo", options)
            codes.append(serve_process(config, on_started=servers.append))

    # The embedding program keeps its signals: SIGTERM asks the server to stop.
    signal.signal(signal.SIGTERM, lambda *_: servers[0].request_exit())
    thread = threading.Thread(target=serve)
    thread.start()
    thread.join()
    print("server thread returned", codes, flush=True)
    sys.exit(codes[0] if codes else 99)
    """
)


def _embed(loop: str, how: str, port: int) -> subprocess.Popen[str]:
    env = {"PYTHONPATH": f"{ROOT}:{ROOT}/tests"}
    return subprocess.Popen(
        [sys.executable, "-c", EMBEDDER, str(port), loop, how],
        cwd=ROOT,
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.parametrize("loop", ["uvloop", "asyncio"])
def test_serving_from_a_thread_and_stopping_gracefully(loop: str) -> None:
    port = free_port()
    proc = _embed(loop, "serve_process", port)
    try:
        wait_for_port(port, proc=proc)
        assert get(port, b"/embedded").status == 200
    finally:
        stop(proc)
    out, err = proc.communicate()
    assert proc.returncode == 0, err
    assert "server thread returned [0]" in out
    assert "Traceback" not in err


@pytest.mark.parametrize("loop", ["uvloop", "asyncio"])
def test_steadyloop_run_from_a_thread_serves(loop: str) -> None:
    port = free_port()
    proc = _embed(loop, "run", port)
    try:
        wait_for_port(port, proc=proc)
        assert get(port, b"/embedded").status == 200
    finally:
        proc.kill()  # run() gives the caller no handle; that it serves is the point here
        proc.wait()
    _, err = proc.communicate()
    assert "Traceback" not in err
