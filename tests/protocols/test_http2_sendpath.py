"""The direct HEADERS/DATA writer: the same bytes and engine state as the engine's own calls."""

from __future__ import annotations

from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import pytest
from h2.stream import H2StreamStateMachine, StreamState

from steadyloop.protocols.http2 import sendpath
from steadyloop.protocols.http2.hpackout import StaticEncoder

REQUEST = [(b":method", b"GET"), (b":scheme", b"http"), (b":authority", b"x"), (b":path", b"/")]


def _pair(end_request: bool = True) -> tuple[Any, Any]:
    """A server engine (configured as the server's) with stream 1 opened by a client."""
    config = h2.config.H2Configuration(
        client_side=False,
        header_encoding=None,
        validate_outbound_headers=False,
        normalize_outbound_headers=False,
    )
    server = h2.connection.H2Connection(config)
    server.encoder = StaticEncoder()
    server.initiate_connection()
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
    client.initiate_connection()
    client.send_headers(1, REQUEST, end_stream=end_request)
    server.receive_data(client.data_to_send())
    client.receive_data(server.data_to_send())
    server.receive_data(client.data_to_send())
    server.data_to_send()
    return server, client


def _state(engine: Any) -> tuple[Any, ...]:
    stream = engine.streams[1]
    return (
        stream.state_machine.state,
        stream.state_machine.headers_sent,
        stream.request_method,
        stream.outbound_flow_control_window,
        engine.outbound_flow_control_window,
        engine.state_machine.state,
    )


@pytest.mark.parametrize("end_request", [True, False])
@pytest.mark.parametrize("body", [b"", b"hello", b"x" * 16384])
@pytest.mark.parametrize("value_size", [10, 20000])  # 20000: a block past one frame, CONTINUATION
def test_same_bytes_and_state_as_the_engine(end_request: bool, body: bytes, value_size: int) -> None:
    headers = [(b":status", b"200"), (b"x-big", b"v" * value_size), (b"content-type", b"text/plain")]
    ours, _ = _pair(end_request)
    theirs, _ = _pair(end_request)
    assert sendpath.send_headers(ours, 1, headers, not body)
    theirs.send_headers(1, headers, end_stream=not body)
    if body:
        assert sendpath.send_data(ours, 1, memoryview(body), True)
        theirs.send_data(1, body, end_stream=True)
    assert _state(ours) == _state(theirs)
    assert ours.data_to_send() == theirs.data_to_send()


def test_a_client_reads_the_response() -> None:
    server, client = _pair()
    headers = [(b":status", b"200"), (b"x-big", b"v" * 40000)]
    assert sendpath.send_headers(server, 1, headers, False)
    assert sendpath.send_data(server, 1, b"abc", False)
    assert sendpath.send_data(server, 1, b"def", True)
    events = client.receive_data(server.data_to_send())
    kinds = [type(event) for event in events]
    assert kinds == [
        h2.events.ResponseReceived,
        h2.events.DataReceived,
        h2.events.DataReceived,
        h2.events.StreamEnded,
    ]
    assert events[0].headers == headers
    assert b"".join(event.data for event in events[1:3]) == b"abcdef"


def test_refused_inputs_raise_as_in_the_engine() -> None:
    server, _ = _pair()
    assert sendpath.send_headers(server, 1, [(b":status", b"200")], True)
    with pytest.raises(h2.exceptions.ProtocolError):
        sendpath.send_data(server, 1, b"late", False)  # the stream is closed


def test_cases_left_to_the_engine() -> None:
    server, _ = _pair()
    assert not sendpath.send_headers(server, 3, [(b":status", b"200")], True)  # unknown stream
    assert sendpath.send_headers(server, 1, [(b":status", b"200")], False)
    assert not sendpath.send_headers(server, 1, [(b"x-trailer", b"1")], True)  # trailers
    server.close_connection()
    assert not sendpath.send_data(server, 1, b"x", True)  # connection closed
    assert server.data_to_send()


@pytest.mark.parametrize("end_request", [True, False])
@pytest.mark.parametrize("value_size", [10, 20000])
def test_a_whole_response_is_what_the_engine_writes(end_request: bool, value_size: int) -> None:
    headers = [(b":status", b"200"), (b"x-big", b"v" * value_size)]
    ours, _ = _pair(end_request)
    theirs, _ = _pair(end_request)
    assert sendpath.send_response(ours, 1, headers, b"hello")
    theirs.send_headers(1, headers, end_stream=False)
    theirs.send_data(1, b"hello", end_stream=True)
    assert _state(ours) == _state(theirs)
    assert ours.data_to_send() == theirs.data_to_send()


def test_a_body_past_the_window_or_one_frame_is_left_to_the_long_way() -> None:
    server, _ = _pair()
    before = _state(server)
    assert not sendpath.send_response(server, 1, [(b":status", b"200")], b"x" * 16385)  # > frame size
    server.outbound_flow_control_window = 10
    assert not sendpath.send_response(server, 1, [(b":status", b"200")], b"x" * 11)  # > window
    server.outbound_flow_control_window = before[4]
    assert _state(server) == before
    assert server.data_to_send() == b""
    assert not sendpath.send_response(server, 3, [(b":status", b"200")], b"x")  # unknown stream


@pytest.mark.parametrize("state", list(StreamState))
@pytest.mark.parametrize("step", ["_SEND_HEADERS", "_SEND_DATA", "_SEND_END_STREAM"])
def test_each_step_is_the_engines_transition(state: StreamState, step: str) -> None:
    def run(machine: Any, do: Any) -> tuple[Any, ...]:
        machine.state = state
        machine.client = False  # a server's stream
        try:
            do(machine)
            error: Any = None
        except Exception as exc:  # compared, not handled
            error = type(exc)
        return (error, machine.state, machine.headers_sent, machine.stream_closed_by, machine.trailers_sent)

    kind = getattr(sendpath, step)
    ours = run(H2StreamStateMachine(1), lambda machine: sendpath._step(machine, kind))
    theirs = run(H2StreamStateMachine(1), lambda machine: machine.process_input(kind[0]))
    assert ours == theirs
