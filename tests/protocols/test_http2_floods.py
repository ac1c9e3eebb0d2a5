"""The HTTP/2 attacks of 2023-2024, played against a real server over loopback: each ends in
GOAWAY with a fitting code, the connection closed, a log line, and the worker serving the
next client."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import hpack
import httpx
import pytest
from h2.errors import ErrorCodes
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    HeadersFrame,
    PingFrame,
    SettingsFrame,
    WindowUpdateFrame,
)

from tests.apps.basic import echo
from tests.conftest import RunningServer, running_server
from tests.h2frames import REQUEST, RawH2, goaway


@pytest.fixture(scope="module")
def server() -> Iterator[RunningServer]:
    with running_server(echo, timeout_write=1.0) as running:
        yield running


def assert_cut(client: RawH2, code: ErrorCodes, server: RunningServer) -> None:
    frames = client.frames()
    assert goaway(frames).error_code == code
    assert client.next_frame(1.0) is None  # closed
    with httpx.Client(http1=False, http2=True) as fresh:  # the worker serves others
        assert fresh.get(f"http://127.0.0.1:{server.port}/").status_code == 200


@pytest.fixture(autouse=True)
def log_info(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "steadyloop.error")


def test_rapid_reset(server: RunningServer, caplog: pytest.LogCaptureFixture) -> None:
    """CVE-2023-44487: HEADERS then RST_STREAM, over and over."""
    with RawH2(server.port) as client:
        for stream_id in range(1, 2 * 1000, 2):
            client.h2.send_headers(stream_id, REQUEST, end_stream=True)
            client.h2.reset_stream(stream_id)
        client.send_raw(client.h2.data_to_send())
        assert_cut(client, ErrorCodes.ENHANCE_YOUR_CALM, server)
    assert "rapid reset" in caplog.text


def test_continuation_flood(server: RunningServer, caplog: pytest.LogCaptureFixture) -> None:
    """A header block that never ends: HEADERS without END_HEADERS, then CONTINUATIONs."""
    with RawH2(server.port) as client:
        block = hpack.Encoder().encode(REQUEST)
        frames = HeadersFrame(1, data=block).serialize()
        for _ in range(1000):
            frames += ContinuationFrame(1, data=b"\x40\x01x\x01y").serialize()  # "x: y", literal
        client.send_raw(frames)
        assert_cut(client, ErrorCodes.PROTOCOL_ERROR, server)
    assert "protocol error" in caplog.text


def test_hpack_bomb(server: RunningServer, caplog: pytest.LogCaptureFixture) -> None:
    """One 4 KB header in the dynamic table, then a thousand one-byte references to it."""
    with RawH2(server.port) as client:
        encoder = hpack.Encoder()
        block = encoder.encode([*REQUEST, (b"x-bomb", b"a" * 4000)])
        block += bytes([0x80 | 62]) * 1000  # indexed field: the newest dynamic entry
        client.send_raw(HeadersFrame(1, data=block, flags=["END_HEADERS", "END_STREAM"]).serialize())
        assert_cut(client, ErrorCodes.ENHANCE_YOUR_CALM, server)
    assert "protocol error" in caplog.text


def test_oversized_header_list(server: RunningServer) -> None:
    with RawH2(server.port) as client:
        big = [(f"x-big-{i}".encode(), b"v" * 4000) for i in range(20)]  # 80 KB > 64 KiB
        client.h2.send_headers(1, REQUEST + big, end_stream=True)
        client.send_raw(client.h2.data_to_send())
        assert_cut(client, ErrorCodes.ENHANCE_YOUR_CALM, server)


@pytest.mark.parametrize(
    ("frame", "what"),
    [
        (SettingsFrame(0), "SETTINGS flood"),
        (PingFrame(0, opaque_data=b"12345678"), "PING flood"),
    ],
)
def test_control_frame_floods(
    server: RunningServer, caplog: pytest.LogCaptureFixture, frame: object, what: str
) -> None:
    with RawH2(server.port) as client:
        client.send_raw(frame.serialize() * 1000)  # type: ignore[attr-defined]
        assert_cut(client, ErrorCodes.ENHANCE_YOUR_CALM, server)
    assert what in caplog.text


def test_empty_data_flood(server: RunningServer, caplog: pytest.LogCaptureFixture) -> None:
    with RawH2(server.port) as client:
        client.h2.send_headers(1, [(b":method", b"POST"), *REQUEST[1:]])
        client.flush()
        client.send_raw(DataFrame(1, data=b"").serialize() * 1000)
        assert_cut(client, ErrorCodes.ENHANCE_YOUR_CALM, server)
    assert "empty DATA frame flood" in caplog.text


def test_a_peer_that_never_opens_its_window_is_cut_by_the_write_timeout(
    server: RunningServer, caplog: pytest.LogCaptureFixture
) -> None:
    # SETTINGS_INITIAL_WINDOW_SIZE 0: the server may send headers but no body at all.
    with RawH2(server.port, settings={0x4: 0}) as client:
        client.h2.send_headers(1, REQUEST, end_stream=True)
        client.flush()
        assert_cut(client, ErrorCodes.ENHANCE_YOUR_CALM, server)
    assert "no flow-control window opened" in caplog.text


def test_a_normal_client_is_far_from_every_limit(server: RunningServer) -> None:
    """A hundred requests on one connection, several cancelled, stay well within bounds."""
    with httpx.Client(http1=False, http2=True) as client:
        for _ in range(100):
            assert client.get(f"http://127.0.0.1:{server.port}/").status_code == 200


def test_the_http2_settings_options_are_what_the_server_announces() -> None:
    options = {
        "http2_max_concurrent_streams": 7,
        "http2_initial_stream_window_size": 100_000,
        "http2_initial_connection_window_size": 1_000_000,
        "http2_max_frame_size": 32_768,
        "http2_max_headers_size": 8_192,
    }
    with running_server(echo, **options) as srv, RawH2(srv.port) as client:
        frames = []
        while not any(isinstance(f, WindowUpdateFrame) and f.stream_id == 0 for f in frames):
            frame = client.next_frame(10.0)
            assert frame is not None, frames
            frames.append(frame)
        (settings,) = [f for f in frames if isinstance(f, SettingsFrame) and "ACK" not in f.flags]
        assert settings.settings[SettingsFrame.MAX_CONCURRENT_STREAMS] == 7
        assert settings.settings[SettingsFrame.INITIAL_WINDOW_SIZE] == 100_000
        assert settings.settings[SettingsFrame.MAX_FRAME_SIZE] == 32_768
        assert settings.settings[SettingsFrame.MAX_HEADER_LIST_SIZE] == 8_192
        (update,) = [f for f in frames if isinstance(f, WindowUpdateFrame)]
        assert 65_535 + update.window_increment == 1_000_000  # the connection window, opened
