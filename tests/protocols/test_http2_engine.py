"""The engine subclass counts open streams as h2 does and forgets the same closed ones."""

from __future__ import annotations

from typing import Any

import h2.config
import h2.connection
import h2.errors

from steadyloop.protocols.http2.engine import Engine


def _request(sid: int) -> list[tuple[bytes, bytes]]:
    return [
        (b":method", b"POST"),
        (b":scheme", b"http"),
        (b":authority", b"x"),
        (b":path", f"/{sid}".encode()),
    ]


def _engine(kind: Any) -> Any:
    """A server engine with streams in each state: open, half-closed, closed (two ways)."""
    server = kind(h2.config.H2Configuration(client_side=False, header_encoding=None))
    server.initiate_connection()
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
    client.initiate_connection()
    for sid in (1, 3, 5, 7, 9):
        client.send_headers(sid, _request(sid), end_stream=sid in (3, 5))
    client.reset_stream(9, h2.errors.ErrorCodes.CANCEL)
    server.receive_data(client.data_to_send())
    server.send_headers(5, [(b":status", b"200")], end_stream=True)  # 5: closed, both ended
    server.send_headers(7, [(b":status", b"200")], end_stream=True)  # 7: half-closed (local)
    return server


def test_same_count_and_same_streams_forgotten() -> None:
    ours, theirs = _engine(Engine), _engine(h2.connection.H2Connection)
    assert ours.open_inbound_streams == theirs.open_inbound_streams == 3  # 1, 3, 7
    assert ours.open_outbound_streams == theirs.open_outbound_streams == 0
    assert sorted(ours.streams) == sorted(theirs.streams) == [1, 3, 7]
    assert dict(ours._closed_streams) == dict(theirs._closed_streams)
    assert sorted(ours._closed_streams) == [5, 9]


def test_frames_with_a_short_repr_give_the_same_events() -> None:
    def events(kind: Any) -> list[str]:
        server = kind(h2.config.H2Configuration(client_side=False, header_encoding=None))
        server.initiate_connection()
        client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
        client.initiate_connection()
        client.send_headers(1, [*_request(1), (b"x-long", b"v" * 40000)])  # HEADERS + CONTINUATION
        client.send_data(1, b"body", pad_length=3)
        client.increment_flow_control_window(1000)
        client.increment_flow_control_window(1000, stream_id=1)
        client.end_stream(1)
        return [repr(event) for event in server.receive_data(client.data_to_send())]

    ours = events(Engine)
    assert ours == events(h2.connection.H2Connection)
    assert [event.split(" ")[0] for event in ours] == [
        "<RemoteSettingsChanged",
        "<RequestReceived",
        "<DataReceived",
        "<WindowUpdated",
        "<WindowUpdated",
        "<DataReceived",  # the empty DATA frame with END_STREAM
        "<StreamEnded",
    ]
