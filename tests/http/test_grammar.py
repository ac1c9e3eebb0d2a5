"""The token grammar shared by the parser, the response writer and --header checks."""

from __future__ import annotations

import pytest

from steadyloop.http.grammar import TCHAR_BYTES, TOKEN, is_token


@pytest.mark.parametrize("name", ["X-Request-ID", "content-type", "!#$%&'*+-.^_`|~", "0"])
def test_tokens(name: str) -> None:
    assert is_token(name)
    assert TOKEN.fullmatch(name.encode()) is not None
    assert all(byte in TCHAR_BYTES for byte in name.encode())


@pytest.mark.parametrize("name", ["", "X Foo", "X:Foo", "naïve", "a\r\nb", '"q"', "(c)", "a/b"])
def test_not_tokens(name: str) -> None:
    assert not is_token(name)
