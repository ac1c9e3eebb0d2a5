"""Wire protocols, one folder each, behind one connection interface (`base.Connection`).

    http1/      HTTP/1.1 on llhttp: keep-alive, pipelining, framing writers

Every protocol is an `asyncio.Protocol` that registers itself in
`ServerState.connections` and speaks to the app through the protocol-neutral
ASGI parts in `steadyloop.asgi`. The server knows protocols only through
`Connection`, and picks the protocol for a new socket in one place
(`steadyloop.server.serve.Server.startup`).
"""
