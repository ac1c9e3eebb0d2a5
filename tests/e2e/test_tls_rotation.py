"""Certificate rotation under the supervisor: HUP makes new workers load the renewed files;
a renewed pair that does not load is refused at HUP and the running workers stay."""

from __future__ import annotations

import shutil
import signal
import socket
import ssl
from pathlib import Path

from e2e.test_workers import READY, supervisor

from tests.certs import Certs, make_certs


def served_certificate(port: int, certs: Certs) -> bytes:
    context = certs.client_context()
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return der


def test_hup_picks_up_a_renewed_certificate_and_refuses_a_broken_one(tmp_path: Path) -> None:
    live = make_certs(tmp_path / "live")
    with supervisor("--ssl-certfile", live.cert_file, "--ssl-keyfile", live.key_file) as s:
        s.ready_pids(2)
        before = served_certificate(s.port, live)

        renewed = make_certs(tmp_path / "renewed", ca=live.ca)  # same CA, new certificate
        shutil.copy(renewed.cert_file, live.cert_file)
        shutil.copy(renewed.key_file, live.key_file)
        mark = s.log.mark()
        s.signal(signal.SIGHUP)
        s.log.wait_all(READY, 2, 15, mark)
        s.log.wait_all(r"worker \d+ exited with code 0", 2, 15, mark)
        after = served_certificate(s.port, live)
        assert after != before
        assert after == ssl.PEM_cert_to_DER_cert(Path(renewed.cert_file).read_text())

        # A key that does not match: the HUP is refused, and the workers go on serving.
        Path(live.key_file).write_bytes(Path(make_certs(tmp_path / "other").key_file).read_bytes())
        mark = s.log.mark()
        s.signal(signal.SIGHUP)
        s.log.wait_for(r"SIGHUP ignored, the running workers stay: .*cannot load", 15, mark)
        assert served_certificate(s.port, live) == after
