"""The response header encoder: valid HPACK that never touches the dynamic table."""

from __future__ import annotations

from hpack import Decoder

from steadyloop.protocols.http2.hpackout import StaticEncoder, encode_field

HEADERS = [
    (b":status", b"200"),  # static entry, name and value
    (b"content-type", b"text/plain"),  # static name, literal value
    (b"x-long", b"v" * 300),  # literal name; a length past the 7-bit prefix
    (b"n" * 200, b""),
    (b"date", b"Wed, 02 Dec 2026 00:00:00 GMT"),
]


def test_blocks_decode_and_leave_the_dynamic_table_empty() -> None:
    encoder, decoder = StaticEncoder(), Decoder()
    for _ in range(3):  # the second and third blocks come from the cache
        assert decoder.decode(encoder.encode(HEADERS), raw=True) == HEADERS
    assert len(decoder.header_table.dynamic_entries) == 0


def test_a_table_size_change_is_announced_once_at_the_start_of_the_next_block() -> None:
    encoder, decoder = StaticEncoder(), Decoder()
    encoder.header_table_size = 4096  # the default: no change, nothing announced
    assert encoder.encode([(b":status", b"200")]) == b"\x88"
    encoder.header_table_size = 100
    block = encoder.encode(HEADERS)
    assert block[:2] == b"\x3f\x45"  # §6.3: 001 + 5-bit prefix integer 100
    assert decoder.decode(block, raw=True) == HEADERS
    assert decoder.header_table_size == 100
    assert encoder.encode([(b":status", b"200")]) == b"\x88"


def test_field_representations() -> None:
    assert encode_field(b":status", b"404") == b"\x8d"
    assert encode_field(b"content-length", b"13") == b"\x0f\x0d\x0213"  # index 28 = 15 + 13
    assert encode_field(b"x", b"y") == b"\x00\x01x\x01y"
