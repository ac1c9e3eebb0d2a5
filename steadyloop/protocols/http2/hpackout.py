"""Response header blocks in HPACK without the dynamic table (RFC 7541).

The engine's encoder (`hpack.Encoder`) indexes fields into a dynamic table and
Huffman-codes every literal; per header block that is a few dozen Python calls
and a dozen logging calls. A server's response headers gain little from either
(a small response's head is a few dozen bytes), so this encoder emits only:

    a static table entry, name and value   "Indexed Header Field"  -- §6.1
    a static name with a literal value      "Literal Header Field without
    a literal name and a literal value       Indexing"              -- §6.2.2

Neither changes the decoder's dynamic table, so each field's encoding depends
on the field alone and is cached (the Date, Server and Content-Type of the
next response are the same bytes). Literals are not Huffman-coded: "H: ... 0
otherwise" -- §5.2.

The table size the peer allows (SETTINGS_HEADER_TABLE_SIZE, set by the engine
as `header_table_size`) is still acknowledged: "This dynamic table size update
MUST occur at the beginning of the first header block following the change to
the dynamic table size" -- §4.2. We announce the size the peer allows (our
table stays empty either way).
"""

from __future__ import annotations

from collections.abc import Iterable

from hpack.table import HeaderTable

_DEFAULT_TABLE_SIZE = 4096
_CACHE_LIMIT = 2048  # distinct fields remembered (Content-Length and Date vary)

# RFC 7541 Appendix A, indexed from 1.
_FULL: dict[tuple[bytes, bytes], int] = {}
_NAME: dict[bytes, int] = {}
for _index, (_name, _value) in enumerate(HeaderTable.STATIC_TABLE, start=1):
    _FULL.setdefault((_name, _value), _index)
    _NAME.setdefault(_name, _index)
del _index, _name, _value


def _integer(value: int, prefix_bits: int, first: int) -> bytes:
    """An HPACK integer (§5.1): `first` holds the bits above the prefix."""
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes((first | value,))
    out = bytearray((first | limit,))
    value -= limit
    while value >= 128:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def encode_field(name: bytes, value: bytes) -> bytes:
    """One field's representation; depends on nothing but the field."""
    index = _FULL.get((name, value))
    if index is not None:
        return bytes((0x80 | index,))  # §6.1; the static table has 61 entries
    index = _NAME.get(name)
    # §6.2.2: an indexed name (4-bit prefix), or 0 and a literal name
    head = b"\x00" + _integer(len(name), 7, 0x00) + name if index is None else _integer(index, 4, 0x00)
    return head + _integer(len(value), 7, 0x00) + value


_cache: dict[tuple[bytes, bytes], bytes] = {}


class StaticEncoder:
    """Drop-in for the engine's `hpack.Encoder` (what `H2Connection` calls): `encode` and
    the `header_table_size` the peer's SETTINGS set."""

    __slots__ = ("_size", "_size_changed")

    def __init__(self) -> None:
        self._size = _DEFAULT_TABLE_SIZE
        self._size_changed = False

    @property
    def header_table_size(self) -> int:
        return self._size

    @header_table_size.setter
    def header_table_size(self, value: int) -> None:
        if value != self._size:
            self._size = value
            self._size_changed = True

    def encode(self, headers: Iterable[tuple[bytes, bytes]], huffman: bool = True) -> bytes:
        cache = _cache
        parts = []
        if self._size_changed:
            self._size_changed = False
            parts.append(_integer(self._size, 5, 0x20))  # §6.3
        for field in headers:
            encoded = cache.get(field)
            if encoded is None:
                name, value = field[0], field[1]
                encoded = encode_field(bytes(name), bytes(value))
                if len(cache) >= _CACHE_LIMIT:
                    cache.clear()
                cache[(name, value)] = encoded
            parts.append(encoded)
        return b"".join(parts)
