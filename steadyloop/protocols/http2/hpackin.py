"""Request header blocks: the engine's HPACK decoder, remembering blocks it decoded.

A client repeating a request sends the same header block each time: once its
fields are in the dynamic table, every field is an index (RFC 7541 §6.1), and
decoding it reads the table without changing it. What a block decodes to
depends on the block, the dynamic table, and the two limits (the header list
size, the table size we allow), nothing else. So a block is remembered while
none of these change: a block that adds to the table ("Literal Header Field
with Incremental Indexing", §6.2.1) or resizes it ("Dynamic Table Size
Update", §6.3) forgets every remembered block, and is not remembered itself
(decoding it again would add again). A block that fails leaves nothing behind.
Errors, limits and table handling stay hpack's own: a block not remembered is
decoded by `hpack.Decoder.decode`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from hpack import Decoder
from hpack.struct import HeaderTuple

_REMEMBERED = 16  # distinct blocks per connection (a client's few kinds of request)
# Only small blocks of few fields are remembered, so that what a connection can make us keep
# stays small (16 x 64 fields) however large a header list --http2-max-headers-size allows:
# a repeated request's block is a few dozen bytes of indexes.
_LARGEST_BLOCK = 1024
_MOST_FIELDS = 64


class RememberingDecoder(Decoder):
    def __init__(self) -> None:
        super().__init__()
        self._blocks: dict[bytes, list[HeaderTuple]] = {}
        self._limits = (self.max_header_list_size, self.max_allowed_table_size)
        self._table_changed = False

    def decode(self, data: bytes, raw: bool = False) -> Iterable[HeaderTuple]:
        blocks = self._blocks
        if raw and type(data) is bytes:
            headers = blocks.get(data)
            if headers is not None:
                if self._limits == (self.max_header_list_size, self.max_allowed_table_size):
                    return headers
                blocks.clear()
        self._table_changed = False
        try:
            decoded = super().decode(data, raw)
        except BaseException:
            blocks.clear()
            raise
        if self._table_changed:
            blocks.clear()
        elif (
            raw
            and type(data) is bytes
            and len(data) <= _LARGEST_BLOCK
            and isinstance(decoded, list)  # what hpack returns, typed as an Iterable
            and len(decoded) <= _MOST_FIELDS
        ):
            limits = (self.max_header_list_size, self.max_allowed_table_size)
            if limits != self._limits or len(blocks) >= _REMEMBERED:
                self._limits = limits
                blocks.clear()
            blocks[data] = decoded
        return decoded

    # The two representations that change the dynamic table (and hpack's setter).

    def _decode_literal_index(self, data: Any) -> tuple[HeaderTuple, int]:
        self._table_changed = True
        return super()._decode_literal_index(data)

    def _update_encoding_context(self, data: Any) -> int:
        self._table_changed = True
        return super()._update_encoding_context(data)

    @property
    def header_table_size(self) -> int:
        return self.header_table.maxsize

    @header_table_size.setter
    def header_table_size(self, value: int) -> None:
        self._blocks.clear()
        self.header_table.maxsize = value
