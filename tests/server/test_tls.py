"""HTTPS over real sockets: scopes, mutual TLS, the wrong protocol on either port, handshakes
that stall or arrive in a crowd, and bad certificates at start."""

from __future__ import annotations

import json
import logging
import socket
import ssl
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.sync.client import connect

from tests.apps.basic import echo, lifespan_ok, respond
from tests.certs import Certs, encrypted_key, make_certs
from tests.conftest import ROOT, running_server
from tests.rawhttp import RawClient, get


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("certs"))


async def tls_info(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        await lifespan_ok(receive, send)
        return
    tls = scope["extensions"].get("tls")
    body = {"scheme": scope["scheme"], "http_version": scope["http_version"], "tls": tls}
    await respond(send, 200, json.dumps(body).encode(), [(b"content-type", b"application/json")])


def test_https_request_has_https_scheme_and_no_tls_extension(certs: Certs) -> None:
    with running_server(echo, **certs.options()) as srv:
        response = httpx.get(f"https://127.0.0.1:{srv.port}/x?y=1", verify=certs.client_context())
    scope = response.json()
    assert response.status_code == 200
    assert scope["scheme"] == "https" and scope["http_version"] == "1.1"
    assert "tls" not in scope["extensions"]  # advertised only with client certificates


def test_mutual_tls_gives_the_app_the_client_certificate(certs: Certs) -> None:
    options = certs.options(ssl_cert_reqs=2, ssl_ca_certs=certs.ca_file)
    with running_server(tls_info, **options) as srv:
        context = certs.client_context(client_cert=True)
        response = httpx.get(f"https://127.0.0.1:{srv.port}/", verify=context)
        tls = response.json()["tls"]
        assert tls["client_cert_chain"][0].startswith("-----BEGIN CERTIFICATE-----")
        assert "CN=test client" in tls["client_cert_name"]
        assert tls["tls_version"] in (0x0303, 0x0304)
        assert isinstance(tls["cipher_suite"], int)
        # Without a certificate the handshake fails; the worker serves the next client.
        with pytest.raises((httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError)):
            httpx.get(f"https://127.0.0.1:{srv.port}/", verify=certs.client_context())
        assert httpx.get(f"https://127.0.0.1:{srv.port}/", verify=context).status_code == 200


def test_plain_http_on_a_tls_port_gets_a_400_that_says_so(
    certs: Certs, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "steadyloop.error")
    with running_server(echo, **certs.options()) as srv:
        with RawClient.connect(srv.port) as client:
            client.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
            response = client.response()
            assert response.status == 400
            assert b"This port speaks TLS" in response.body
            client.assert_closed()
        assert httpx.get(f"https://127.0.0.1:{srv.port}/", verify=certs.client_context()).status_code == 200
    assert "plain HTTP on a TLS port" in caplog.text


def test_tls_on_a_plain_port_is_logged_and_closed(certs: Certs, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "steadyloop.error")
    with running_server(echo) as srv:
        with (
            pytest.raises((ssl.SSLError, ConnectionError)),
            socket.create_connection(("127.0.0.1", srv.port), timeout=5) as raw,
        ):
            certs.client_context().wrap_socket(raw, server_hostname="127.0.0.1")
        assert get(srv.port).status == 200
    assert "a TLS client reached a plain-HTTP port" in caplog.text


@pytest.mark.parametrize("first_bytes", [b"", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"])
def test_a_silent_or_stalled_handshake_is_cut_by_the_header_timeout(certs: Certs, first_bytes: bytes) -> None:
    with (
        running_server(echo, timeout_header_read=1.0, **certs.options()) as srv,
        RawClient.connect(srv.port) as client,
    ):
        if first_bytes:
            client.send(first_bytes)  # a ClientHello that never ends
        assert client.closed_within(timeout=5.0)


def test_many_concurrent_handshakes_do_not_block_the_loop(certs: Certs) -> None:
    """200 clients handshake at once (h2load, a separate process): each handshake is one
    short callback (~2 ms), so the loop is never held past the watchdog threshold. (A loaded
    machine can delay the loop thread itself, hence a threshold well above one handshake.)"""
    with running_server(echo, block_threshold=0.25, **certs.options()) as srv:
        url = f"https://127.0.0.1:{srv.port}/"
        for protocol in ([], ["--h1"]):
            result = subprocess.run(
                ["h2load", *protocol, "-c", "200", "-n", "400", url],
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert "400 succeeded, 0 failed, 0 errored" in result.stdout, result.stdout
        assert srv.server.watchdog is not None
        assert srv.server.watchdog.blocks == 0


def run_cli(args: list[str], timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "steadyloop", "--port", "0", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def handshake(port: int, context: ssl.SSLContext) -> tuple[str | None, str]:
    """The TLS version and cipher a client with `context` gets, or SSLError."""
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        cipher = tls.cipher()
        assert cipher is not None
        return tls.version(), cipher[0]


def capped_at_tls12(certs: Certs) -> ssl.SSLContext:
    context = certs.client_context()
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    return context


def test_ssl_version_sets_the_oldest_tls_version_and_ssl_ciphers_the_tls12_suites(certs: Certs) -> None:
    with running_server(echo, **certs.options()) as srv:  # default: TLS 1.2 and later
        assert handshake(srv.port, capped_at_tls12(certs))[0] == "TLSv1.2"
        assert handshake(srv.port, certs.client_context())[0] == "TLSv1.3"
    with running_server(echo, **certs.options(ssl_version="1.3")) as srv:
        with pytest.raises(ssl.SSLError):
            handshake(srv.port, capped_at_tls12(certs))
        assert handshake(srv.port, certs.client_context())[0] == "TLSv1.3"
    with running_server(echo, **certs.options(ssl_ciphers="ECDHE+CHACHA20")) as srv:
        version, cipher = handshake(srv.port, capped_at_tls12(certs))
        assert version == "TLSv1.2" and "CHACHA20" in cipher


def test_a_cipher_list_that_matches_nothing_is_one_line_at_start(certs: Certs) -> None:
    result = run_cli([*certs.args(), "--ssl-ciphers", "NO-SUCH-CIPHER"])
    assert result.returncode != 0
    assert "--ssl-ciphers 'NO-SUCH-CIPHER': no cipher matches this list" in result.stderr


def test_a_wrong_key_password_is_one_line_before_any_worker_starts(certs: Certs, tmp_path: Path) -> None:
    key = encrypted_key(certs, b"right", tmp_path / "enc.pem")
    args = ["--ssl-certfile", certs.cert_file, "--ssl-keyfile", key, "--ssl-keyfile-password", "wrong"]
    result = run_cli([*args, "--workers", "2"])
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if "cannot load the certificate" in line]
    assert len(errors) == 1, result.stderr
    assert "worker" not in result.stderr.lower()  # refused before forking


def test_a_key_that_does_not_match_the_certificate_stops_a_single_process(
    certs: Certs, tmp_path: Path
) -> None:
    other = make_certs(tmp_path / "other")
    result = run_cli(["--ssl-certfile", certs.cert_file, "--ssl-keyfile", other.key_file])
    assert result.returncode != 0
    assert "cannot load the certificate and key" in result.stderr



async def ws_scheme(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        await lifespan_ok(receive, send)
        return
    assert scope["type"] == "websocket"
    assert (await receive())["type"] == "websocket.connect"
    await send({"type": "websocket.accept"})
    await send({"type": "websocket.send", "text": scope["scheme"]})
    await send({"type": "websocket.close", "code": 1000})


def test_a_websocket_over_tls_has_the_wss_scheme(certs: Certs) -> None:
    with running_server(ws_scheme, **certs.options()) as srv:
        context = certs.client_context(alpn=["http/1.1"])
        with connect(f"wss://127.0.0.1:{srv.port}/", ssl=context, open_timeout=10) as ws:
            assert ws.recv(timeout=10) == "wss"
