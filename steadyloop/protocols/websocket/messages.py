"""Frame payloads to ASGI `websocket.receive` messages, text checked as UTF-8. Pure.

"When an endpoint is to interpret a byte stream as UTF-8 but finds that the byte
stream is not, in fact, a valid UTF-8 stream, that endpoint MUST _Fail the
WebSocket Connection_" -- RFC 6455 §8.1. Both helpers raise UnicodeDecodeError
for that; the connection fails with 1007.
"""

from __future__ import annotations

import codecs

from steadyloop.asgi.types import Message

Payload = bytes | bytearray | memoryview


def receive_message(text: bool, data: Payload) -> Message:
    """The message for one unfragmented text or binary frame."""
    if text:
        return {"type": "websocket.receive", "text": str(data, "utf-8")}
    return {"type": "websocket.receive", "bytes": bytes(data)}


class Fragments:
    """A fragmented message being put back together -- RFC 6455 §5.4. Text is decoded
    piece by piece, so that a bad message fails at its first bad fragment."""

    __slots__ = ("decoder", "pieces")

    def __init__(self, text: bool) -> None:
        self.decoder = codecs.getincrementaldecoder("utf-8")() if text else None
        self.pieces: list[str] | list[bytes] = []

    def add(self, data: Payload, fin: bool) -> Message | None:
        """Add a fragment; the whole message once `fin`, else None."""
        decoder = self.decoder
        if decoder is not None:
            texts: list[str] = self.pieces  # type: ignore[assignment]
            texts.append(decoder.decode(data, fin))
            if fin:
                return {"type": "websocket.receive", "text": "".join(texts)}
        else:
            chunks: list[bytes] = self.pieces  # type: ignore[assignment]
            chunks.append(bytes(data))
            if fin:
                return {"type": "websocket.receive", "bytes": b"".join(chunks)}
        return None
