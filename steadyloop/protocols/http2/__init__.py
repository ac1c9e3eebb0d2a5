"""HTTP/2 (RFC 9113) on python-hyper's `h2` engine: the connection (`connection.py`: frames
to streams, GOAWAY, timeouts), a stream as an ASGI request cycle (`stream.py`), request
pseudo-headers to a scope (`requests.py`) and what a peer may cost (`floods.py`)."""
