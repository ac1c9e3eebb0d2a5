"""HTTP/1.1: the connection protocol (`connection.py`), its side of the request cycle
(`cycle.py`) and sendfile for pathsend (`sendfile.py`). Parsing and framing are the pure
layer's, `steadyloop.http`."""
