"""The HTTP/1.1 request path as a fuzz target: generators, the run, and its invariants.

Used by tests/http/test_fuzz.py (a quick, derandomized run in the suite) and by
bench/fuzz.py (long runs). Inputs are structured requests (valid and hostile parts mixed),
the committed seed corpus in tests/http/corpus/, and byte-level mutations of both.

Invariants checked for every input:

- nothing but ProtocolError ever leaves the parser, and feeding never raises;
- the same bytes split into reads differently give the same events and the same answer;
- a request's headers never contain bytes that belong to another request (each request
  in a pipelined series carries its own marker in every field it owns, trailers included);
- against h11: both accept with the same method, target, headers and body, or both
  refuse, or the case is one of the disagreements listed in docs/http.md (`disagreement`).
"""

from __future__ import annotations

import itertools
import re
from pathlib import Path
from typing import Any

import h11
from hypothesis import strategies as st

from steadyloop.http.errors import ProtocolError
from steadyloop.http.parser import (
    END_OF_MESSAGE,
    NEED_DATA,
    READ_BOUND_PREFIX,
    RequestHead,
    RequestParser,
)
from steadyloop.http.response import simple_response

CORPUS = Path(__file__).parent / "corpus"
LIMITS = {"max_request_line": 512, "max_header_count": 20, "max_header_size": 512, "max_head_size": 4096}

KNOWN_METHODS = [b"GET", b"HEAD", b"POST", b"PUT", b"DELETE", b"OPTIONS", b"PATCH"]
OTHER_TOKENS = [b"FROB", b"get", b"GETX", b"DESCRIBE", b"PRI", b"M-SEARCH", b"QUERY"]
NOT_TOKENS = [b"G(T", b"GE\x01", b"", b" GET", b"\x16\x03\x01"]
TARGETS = [b"/", b"/a/b?c=d", b"*", b"http://example.com/x", b"/%2F..%2f", b"/a b", b"/\x7f", b"//x"]
VERSIONS = [b"HTTP/1.1"] * 6 + [b"HTTP/1.0", b"HTTP/1.2", b"HTTP/2.0", b"http/1.1", b"HTTP/1"]
NAMES = [b"host", b"content-length", b"transfer-encoding", b"expect", b"connection", b"x-a", b"cookie"]
HOSTILE_NAMES = [b"x a", b"x:a", b"", b"x\x00", b"x\ta", b" host"]
VALUES = [b"a", b"100-continue", b"chunked", b"gzip, chunked", b"close", b"5", b"-1", b"1 2", b" v ", b"\x01"]


token_text = st.text(alphabet="abcdefghijklmnopqrstuvwxyz-0123456789", min_size=1, max_size=12)
value_bytes = st.one_of(
    st.sampled_from(VALUES),
    st.binary(max_size=20).map(lambda b: bytes(c for c in b if c not in (10, 13))),
    st.text(alphabet="abc xyz;=,\t", max_size=20).map(str.encode),
)


@st.composite
def requests(draw: st.DrawFn, marker: bytes = b"") -> bytes:
    """One request: mostly well-formed, with hostile parts drawn in now and then. `marker`
    goes into the target and every field value, to tell one request's bytes from another's."""
    method = draw(
        st.one_of(st.sampled_from(KNOWN_METHODS), st.sampled_from(OTHER_TOKENS), st.sampled_from(NOT_TOKENS))
    )
    target = draw(st.sampled_from(TARGETS)) + marker
    version = draw(st.sampled_from(VERSIONS))
    end = draw(st.sampled_from([b"\r\n"] * 9 + [b"\n"]))
    headers = [(b"host", b"example" + marker)] if draw(st.integers(0, 9)) else []
    for _ in range(draw(st.integers(0, 4))):
        name = draw(
            st.one_of(st.sampled_from(NAMES), st.sampled_from(HOSTILE_NAMES), token_text.map(str.encode))
        )
        headers.append((name, draw(value_bytes) + marker))
    framing = draw(st.sampled_from(["none", "length", "chunked"]))
    body = b""
    if framing == "length":
        body = draw(st.binary(max_size=30))
        headers.append((b"content-length", str(len(body)).encode()))
    elif framing == "chunked":
        headers.append((b"transfer-encoding", b"chunked"))
        for chunk in draw(st.lists(st.binary(min_size=1, max_size=12), max_size=3)):
            ext = b";e=" + draw(token_text).encode() if draw(st.booleans()) else b""
            body += b"%x%s\r\n%s\r\n" % (len(chunk), ext, chunk)
        body += b"0\r\n"
        for _ in range(draw(st.integers(0, 2))):
            name = draw(st.one_of(st.sampled_from(NAMES), token_text.map(str.encode)))
            body += name + b": t" + marker + b"\r\n"
        body += b"\r\n"
    head = method + b" " + target + b" " + version + end
    head += b"".join(name + b": " + value + end for name, value in headers)
    return head + end + body


def corpus() -> list[bytes]:
    return [path.read_bytes() for path in sorted(CORPUS.glob("*.http"))]


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A corpus entry with a few bytes flipped, inserted, deleted or duplicated."""
    data = bytearray(draw(st.sampled_from(corpus())))
    for _ in range(draw(st.integers(1, 4))):
        if not data:
            break
        at = draw(st.integers(0, len(data) - 1))
        how = draw(st.integers(0, 3))
        if how == 0:
            data[at] = draw(st.sampled_from(b"\r\n :;\t\x00\x7fAz0"))
        elif how == 1:
            data.insert(at, draw(st.integers(0, 255)))
        elif how == 2:
            del data[at]
        else:
            data[at:at] = data[at : at + draw(st.integers(1, 16))]
    return bytes(data)


# -- running one input ----------------------------------------------------------------------


def run(data: bytes, cuts: list[int]) -> list[Any]:
    """Feed `data` cut at `cuts`; comparable events, ending in the answer's status line."""
    parser = RequestParser(**LIMITS)
    out: list[Any] = []
    bounds = [0, *sorted(set(cuts)), len(data)]
    for start, end in itertools.pairwise(bounds):
        parser.feed(data[start:end])  # never raises: errors wait in the event queue
        while True:
            try:
                event = parser.next_event()
            except ProtocolError as exc:
                out.append(simple_response(exc.status).split(b"\r\n", 1)[0])
                if exc.reason.startswith(READ_BOUND_PREFIX):
                    out.append(READ_BOUND_PREFIX)
                return out
            if event is NEED_DATA:
                break
            if isinstance(event, RequestHead):
                out.append((event.method, event.target, event.http_version, list(event.headers)))
            elif isinstance(event, bytes):
                if out and isinstance(out[-1], bytes):
                    out[-1] += event
                else:
                    out.append(event)
            else:
                assert event is END_OF_MESSAGE
                out.append("end")
    return out


def check_splits(data: bytes, cuts: list[int]) -> list[Any]:
    """Invariant: whole, bytewise and cut at `cuts`, the same events and answer -- except
    where the bound on unfinished lines, which counts reads, refused (docs/http.md)."""
    whole = run(data, [])
    for other in (run(data, cuts), run(data, list(range(1, len(data))))):
        if READ_BOUND_PREFIX in whole or READ_BOUND_PREFIX in other:
            continue
        assert other == whole, (data, cuts)
    return whole


def check_no_leak(events: list[Any], markers: list[bytes]) -> None:
    """Invariant: every field of request i carries marker i or no marker at all."""
    heads = [event for event in events if isinstance(event, tuple)]
    for index, (_method, target, _version, headers) in enumerate(heads):
        own = markers[index]
        for name, value in [(b"target", target), *headers]:
            for other in markers:
                if other != own and other in name + value:
                    raise AssertionError(f"request {index} carries {other!r} of another request: {name!r}")


# -- the differential check against h11 ---------------------------------------------------------


def ours(data: bytes) -> tuple[Any, ...]:
    """What steadyloop makes of the first request in `data`."""
    events = run(data, [])
    if events and isinstance(events[0], tuple) and "end" in events:
        method, target, _version, headers = events[0]
        body = b"".join(e for e in events[1 : events.index("end")] if isinstance(e, bytes))
        return ("accepted", method.encode("ascii"), target, headers, body)
    if events and events[-1] == READ_BOUND_PREFIX:
        events.pop()
    if events and isinstance(events[-1], bytes) and events[-1].startswith(b"HTTP/1.1 "):
        return ("refused", int(events[-1].split()[1]))
    return ("incomplete",)


def theirs(data: bytes) -> tuple[Any, ...]:
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=LIMITS["max_head_size"])
    conn.receive_data(data)
    request: Any = None
    body = b""
    try:
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA or event is h11.PAUSED:
                return ("incomplete",)
            if isinstance(event, h11.Request):
                request = event
            elif isinstance(event, h11.Data):
                body += bytes(event.data)
            elif isinstance(event, h11.EndOfMessage):
                headers = [(bytes(n), bytes(v)) for n, v in request.headers.raw_items()]
                headers = [(n.lower(), v) for n, v in headers]
                trailers = [(bytes(n).lower(), bytes(v)) for n, v in event.headers.raw_items()]
                return ("accepted", bytes(request.method), bytes(request.target), headers, body, trailers)
    except h11.RemoteProtocolError as exc:
        return ("refused", exc.error_status_hint)


def disagreement(data: bytes, mine: tuple[Any, ...], reference: tuple[Any, ...]) -> str | None:
    """None when steadyloop and h11 agree; else the name of a documented disagreement, or
    "UNEXPLAINED"."""
    if mine[0] == "accepted" and reference[0] == "accepted":
        if mine[1:] == reference[1:5]:
            return None
        return "UNEXPLAINED"
    if mine[0] == reference[0]:
        return None  # both refuse (statuses may differ) or both wait for more
    for name, applies in _DISAGREEMENTS:
        if applies(data, mine, reference):
            return name
    return "UNEXPLAINED"


def _we_refuse(mine: tuple[Any, ...], *statuses: int) -> bool:
    return mine[0] == "refused" and (not statuses or mine[1] in statuses)


def _first_line(data: bytes) -> bytes:
    return data.split(b"\n", 1)[0]


def _method(data: bytes) -> bytes:
    return data.lstrip(b"\r\n").split(b" ", 1)[0]


def _unknown_method(data: bytes, mine: Any, reference: Any) -> bool:
    # llhttp knows a fixed list of methods (HTTP's, WebDAV's and a few more); h11 takes any
    # token. Both answers are allowed by RFC 9110 §9.1.
    return _we_refuse(mine, 501) and reference[0] != "refused"


def _forbidden_trailer(data: bytes, mine: Any, reference: Any) -> bool:
    from steadyloop.http.parser import _FORBIDDEN_IN_TRAILER

    return (
        _we_refuse(mine, 400)
        and reference[0] == "accepted"
        and any(name in _FORBIDDEN_IN_TRAILER for name, _ in reference[5])
    )


def _expectation(data: bytes, mine: Any, reference: Any) -> bool:
    return _we_refuse(mine, 417)


def _http_10_chunked(data: bytes, mine: Any, reference: Any) -> bool:
    return _we_refuse(mine, 400) and b" HTTP/1.0" in _first_line(data) and b"chunked" in data.lower()


def _h11_lenient_line(data: bytes, mine: Any, reference: Any) -> bool:
    # h11 accepts a bare LF as a line end; llhttp in strict mode does not.
    return _we_refuse(mine, 400) and b"\n" in data.replace(b"\r\n", b"")


def _target_characters(data: bytes, mine: Any, reference: Any) -> bool:
    # llhttp refuses bytes that RFC 3986 does not allow in a URI ("{", DEL, non-ASCII...);
    # h11's looser pattern lets them by.
    target = _first_line(data.lstrip(b"\r\n")).split(b" ")[1:2]
    allowed = re.compile(rb"[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]*")
    return _we_refuse(mine, 400) and bool(target) and allowed.fullmatch(target[0]) is None


def _version(data: bytes, mine: Any, reference: Any) -> bool:
    # h11 speaks any HTTP/1.x; we answer 505 to what is not 1.0 or 1.1.
    return _we_refuse(mine, 505)


def _limits(data: bytes, mine: Any, reference: Any) -> bool:
    # Our per-field, per-line and count limits are tighter than h11's one head-size bound.
    return _we_refuse(mine, 414, 431)


def _content_length_with_chunked(data: bytes, mine: Any, reference: Any) -> bool:
    # h11 drops Content-Length when Transfer-Encoding is there (RFC 9112 §6.3 allows it);
    # we refuse the pair outright, as a smuggling attempt.
    lowered = data.lower()
    return _we_refuse(mine, 400) and b"content-length" in lowered and b"transfer-encoding" in lowered


def _obs_fold(data: bytes, mine: Any, reference: Any) -> bool:
    # "A server that receives an obs-fold in a request message ... MUST either reject the
    # message by sending a 400 (Bad Request) ... or replace each received obs-fold with one or
    # more SP octets" -- RFC 9112 §5.2. h11 replaces; we reject.
    head = data.split(b"\r\n\r\n", 1)[0]
    return _we_refuse(mine, 400) and re.search(rb"\n[ \t]", head) is not None


def _control_in_value(data: bytes, mine: Any, reference: Any) -> bool:
    # RFC 9110 §5.5: CTL characters in a field value are invalid (a recipient MAY keep them);
    # h11 keeps everything but NUL and whitespace, llhttp's strict mode refuses them.
    head = data.split(b"\r\n\r\n", 1)[0]
    trailers = re.split(rb"\r\n0(?:;[^\r\n]*)?\r\n", data)[-1] if b"chunked" in head.lower() else b""
    control = re.compile(rb"[\x01-\x08\x0b\x0c\x0e-\x1f\x7f]")
    return _we_refuse(mine, 400) and (control.search(head) or control.search(trailers)) is not None


def _early_refusal(data: bytes, mine: Any, reference: Any) -> bool:
    # llhttp refuses at the first wrong byte; h11 judges a head once it is complete.
    return _we_refuse(mine) and reference[0] == "incomplete"


def _empty_lines_first(data: bytes, mine: Any, reference: Any) -> bool:
    # "a server ... SHOULD ignore at least one empty line (CRLF) received prior to the
    # request-line" -- RFC 9112 §2.2. llhttp skips any CR/LF there; h11 wants exact CRLFs.
    return mine[0] != "refused" and data[:1] in (b"\r", b"\n")


def _spaces_in_request_line(data: bytes, mine: Any, reference: Any) -> bool:
    # "recipients MAY instead parse on whitespace-delimited word boundaries" -- RFC 9112 §3.
    return mine[0] != "refused" and b"  " in _first_line(data.lstrip(b"\r\n"))


def _long_chunk_extension(data: bytes, mine: Any, reference: Any) -> bool:
    # Bounded by --limit-request-field-size (CVE-2024-22019); h11 has no such bound.
    return _we_refuse(mine, 400) and re.search(rb"\n[0-9a-fA-F]+;[^\r\n]{400,}", data) is not None


def _bare_cr(data: bytes, mine: Any, reference: Any) -> bool:
    # "A recipient of such a bare CR MUST consider that element to be invalid or replace each
    # bare CR with SP" -- RFC 9112 §2.2. We refuse; h11 lets some through (chunk extensions).
    return _we_refuse(mine, 400) and re.search(rb"\r(?!\n)", data) is not None


_TOKEN = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_CHUNK_EXT = re.compile(
    rb"(?:[ \t]*;[ \t]*" + _TOKEN + rb"(?:[ \t]*=[ \t]*(?:" + _TOKEN + rb'|"[^"\r\n]*"))?)*'
)


def _chunk_extension_grammar(data: bytes, mine: Any, reference: Any) -> bool:
    # chunk-ext = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] ) -- RFC 9112
    # §7.1.1; llhttp holds extensions to it, h11 skips whatever precedes the CRLF.
    body = data.split(b"\r\n\r\n", 1)[1:]
    lines = re.findall(rb"(?:^|\n)[0-9a-fA-F]+(;[^\n]*?)\r?\n", body[0]) if body else []
    return _we_refuse(mine, 400) and any(_CHUNK_EXT.fullmatch(ext) is None for ext in lines)


def _target_form(data: bytes, mine: Any, reference: Any) -> bool:
    # RFC 9112 §3.2: origin-form ("/..."), absolute-form, authority-form or "*"; h11 takes any
    # run of visible characters, llhttp only these, and absolute-form only as scheme://...
    parts = _first_line(data.lstrip(b"\r\n")).split(b" ")
    if not _we_refuse(mine, 400) or len(parts) < 2:
        return False
    target = parts[1]
    return not (target[:1] == b"/" or target == b"*" or re.match(rb"[A-Za-z][A-Za-z0-9+.\-]*://", target))


def _http2_preface(data: bytes, mine: Any, reference: Any) -> bool:
    # llhttp reads a PRI request as HTTP/2's connection preface: it waits for the rest of the
    # preface, or refuses it (505 for HTTP/2.0, 501 for PRI as an HTTP/1.1 method).
    return _method(data) == b"PRI" and (mine[0] == "incomplete" or _we_refuse(mine, 501, 505))


def _transfer_coding(data: bytes, mine: Any, reference: Any) -> bool:
    return _we_refuse(mine, 501) and b"transfer-encoding" in data.lower()


_DISAGREEMENTS = [
    ("refused before the head is complete", _early_refusal),
    ("obs-fold: 400", _obs_fold),
    ("control character in a field value", _control_in_value),
    ("empty lines before the request line: skipped", _empty_lines_first),
    ("several spaces between request-line parts: accepted", _spaces_in_request_line),
    ("chunk extension longer than the field limit", _long_chunk_extension),
    ("bare CR", _bare_cr),
    ("chunk extension outside its grammar", _chunk_extension_grammar),
    ("request target in none of the four forms", _target_form),
    ("PRI: HTTP/2's connection preface", _http2_preface),
    ("unknown method: 501 (h11 accepts any token)", _unknown_method),
    ("forbidden field in a trailer", _forbidden_trailer),
    ("unsupported Expect: 417", _expectation),
    ("Transfer-Encoding in HTTP/1.0", _http_10_chunked),
    ("bare LF line end", _h11_lenient_line),
    ("byte not allowed in a URI in the target", _target_characters),
    ("HTTP version other than 1.0/1.1: 505", _version),
    ("field, line or count limit", _limits),
    ("Content-Length with Transfer-Encoding", _content_length_with_chunked),
    ("unsupported transfer coding: 501", _transfer_coding),
]


# -- the properties, as used by the test suite and bench/fuzz.py ----------------------------------

MARKERS = [b"~m%d~" % i for i in range(4)]

inputs = st.one_of(requests(), mutated())
pipelines = st.integers(1, len(MARKERS)).flatmap(
    lambda n: st.tuples(*[requests(marker=MARKERS[i]) for i in range(n)])
)


def cuts_for(data: bytes) -> st.SearchStrategy[list[int]]:
    return st.lists(st.integers(1, max(1, len(data) - 1)), max_size=6)


def check_input(data: bytes, cuts: list[int]) -> None:
    """Splits don't matter, and h11 agrees or the difference is a documented one."""
    check_splits(data, cuts)
    found = disagreement(data, ours(data), theirs(data))
    assert found != "UNEXPLAINED", (data, ours(data), theirs(data))


def check_pipeline(parts: tuple[bytes, ...], cuts: list[int]) -> None:
    """Pipelined requests: splits don't matter and no request carries another's bytes."""
    events = check_splits(b"".join(parts), cuts)
    check_no_leak(events, MARKERS[: len(parts)])
