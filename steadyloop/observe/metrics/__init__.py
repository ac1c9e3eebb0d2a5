"""Metrics: what one process knows of its loop, gathered, published and exposed.

    requests.py   the request path's one hook: counters in preallocated lists
    process.py    ProcessStats: one process's numbers as a JSON-able snapshot
    shm.py        StatsSlot: a worker's latest snapshot in shared memory, seqlocked
    publisher.py  the worker's thread that writes its snapshot there, twice a second
    totals.py     adding counters up: across workers, and of workers that exited
    exposition.py the Prometheus families (prometheus_client) and /status.json
    listener.py   the small HTTP listener on the metrics port: /metrics, /, /status.json
    standalone.py one process without a supervisor: the listener on its own thread

A worker's loop never serves a scrape: it only bumps counters; a thread of its
own publishes, and the supervisor (or, in one process, a thread) answers.
"""
