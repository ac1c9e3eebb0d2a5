"""The remembering HPACK decoder decodes every block as hpack's own decoder does."""

from __future__ import annotations

import random

import hpack
import pytest

from steadyloop.protocols.http2.hpackin import RememberingDecoder


def test_same_headers_as_hpack_while_the_table_changes_and_blocks_repeat() -> None:
    rng = random.Random(7)
    encoder, ours, reference = hpack.Encoder(), RememberingDecoder(), hpack.Decoder()
    hits = 0
    for i in range(2000):
        if i % 400 == 0:  # size updates, down to an empty table and back
            encoder.header_table_size = rng.choice([0, 100, 4096])
        value = rng.choice([b"1", b"2", b"3"] * 5 + [b"z" * rng.randrange(1, 3000)])
        fields = [
            (b":method", b"GET"),
            (b":path", rng.choice([b"/", b"/a"])),
            (b"x-" + bytes([97 + rng.randrange(5)]), value),
        ]
        block = encoder.encode(fields)
        remembered = ours._blocks.get(block)
        decoded = ours.decode(block, raw=True)
        assert list(decoded) == reference.decode(block, raw=True) == fields
        hits += decoded is remembered
    assert hits > 100  # blocks were answered from memory


def test_a_lower_header_list_limit_is_applied_to_remembered_blocks() -> None:
    encoder, ours = hpack.Encoder(), RememberingDecoder()
    fields = [(b":method", b"GET"), (b"x-big", b"v" * 100)]
    ours.decode(encoder.encode(fields), raw=True)
    block = encoder.encode(fields)  # all indexed now
    assert ours.decode(block, raw=True) == ours.decode(block, raw=True)
    ours.max_header_list_size = 50
    with pytest.raises(hpack.OversizedHeaderListError):
        ours.decode(block, raw=True)


def test_a_failed_block_is_not_remembered() -> None:
    ours = RememberingDecoder()
    bad = bytes([0x80 | 70])  # an index past the (empty) dynamic table
    for _ in range(2):
        with pytest.raises(hpack.InvalidTableIndex):
            ours.decode(bad, raw=True)


def test_long_header_lists_are_decoded_every_time() -> None:
    # What one connection can make the decoder keep stays small, whatever the limits allow.
    encoder, ours = hpack.Encoder(), RememberingDecoder()
    many = [(b":method", b"GET")] + [(b"x-%d" % i, b"v") for i in range(80)]
    ours.decode(encoder.encode(many), raw=True)
    block = encoder.encode(many)  # all indexed from now on: the table does not change
    assert ours.decode(block, raw=True) == many
    assert block not in ours._blocks
    small = [(b":method", b"GET"), (b":path", b"/")]
    block = encoder.encode(small)
    assert ours.decode(block, raw=True) == small
    assert block in ours._blocks
