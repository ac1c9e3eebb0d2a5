"""The hand-read frame boundaries and hand-built server frames, against the engine's own."""

from __future__ import annotations

import pytest
from websockets.frames import Frame, Opcode

from steadyloop.protocols.websocket.framing import FAST_BINARY, FAST_TEXT, frame_size, server_frame


@pytest.mark.parametrize("size", [0, 1, 125, 126, 65535, 65536, 70000])
@pytest.mark.parametrize("mask", [True, False])
def test_frame_size_matches_what_the_engine_writes(size: int, mask: bool) -> None:
    wire = Frame(Opcode.BINARY, b"x" * size).serialize(mask=mask, extensions=[])
    assert frame_size(wire, 0) == len(wire)
    assert frame_size(b"junk" + wire, 4) == len(wire)
    assert frame_size(wire[:1], 0) == -1  # a head cut short: the size is not known yet
    if size >= 126:
        assert frame_size(wire[:3], 0) == -1  # ...nor while its extended length is partial


@pytest.mark.parametrize("size", [0, 5, 125, 126, 65535, 65536])
def test_server_frames_are_the_engines_frames(size: int) -> None:
    for first, opcode in ((FAST_TEXT, Opcode.TEXT), (FAST_BINARY, Opcode.BINARY)):
        payload = b"y" * size
        assert server_frame(first, payload) == Frame(opcode, payload).serialize(mask=False, extensions=[])
