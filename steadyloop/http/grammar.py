"""Pieces of the HTTP grammar (RFC 9110 §5.6) that more than one place checks.

    token = 1*tchar
    tchar = "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" / "-" / "." /
            "^" / "_" / "`" / "|" / "~" / DIGIT / ALPHA

Method names and header field names are tokens: the parser classifies unknown
methods with it, the response writer refuses app header names that are not
tokens, and the configuration refuses such --header names.
"""

from __future__ import annotations

import re
from typing import Final

TCHAR: Final = b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
# For byte-by-byte scans (iterating over bytes gives ints).
TCHAR_BYTES: Final = frozenset(TCHAR)
# For a whole name at C speed.
TOKEN: Final = re.compile(b"[" + re.escape(TCHAR) + b"]+")


def is_token(text: str) -> bool:
    """Is `text` a token (a valid method or header field name)?"""
    return text.isascii() and TOKEN.fullmatch(text.encode("ascii")) is not None
