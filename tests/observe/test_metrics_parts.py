"""The pure parts of metrics: counters, the shared slot, adding up, exposition, restart reasons."""

from __future__ import annotations

import json
import os

from prometheus_client.parser import text_string_to_metric_families

from steadyloop.observe.metrics.exposition import ServerView, WorkerView, render
from steadyloop.observe.metrics.requests import RequestCounters
from steadyloop.observe.metrics.shm import StatsSlot
from steadyloop.observe.metrics.totals import add
from steadyloop.supervisor.metrics_hub import restart_reason
from steadyloop.supervisor.process import Phase, Worker


def test_request_counters_by_class_protocol_and_duration_bucket() -> None:
    counters = RequestCounters()
    counters.request_done(200, "1.1", 0.0004)
    counters.request_done(204, "1.1", 0.003)
    counters.request_done(503, "2", 0.2)
    counters.request_done(999, "9", 20.0)  # nonsense lands in "other", not in an error
    snap = counters.snapshot()
    assert snap["requests"] == {
        "HTTP/1.1": {"2xx": 2},
        "HTTP/2": {"5xx": 1},
        "other": {"other": 1},
    }
    duration = snap["duration"]
    assert duration["cum"][0] == 1  # <= 1 ms
    assert duration["cum"][2] == 2  # <= 5 ms
    assert duration["cum"][-2] == 3 and duration["cum"][-1] == 4  # 20 s only under +Inf
    assert abs(duration["sum"] - 20.2034) < 1e-9


def test_slot_round_trip_and_a_write_that_never_finished() -> None:
    slot = StatsSlot()
    assert slot.read() is None
    assert slot.publish(b'{"counters": {"n": 1}}')
    assert slot.read() == {"counters": {"n": 1}}
    # A writer killed mid-write leaves an odd sequence: the reader does not take torn data.
    slot._map[0:8] = (3).to_bytes(8, "little")  # type: ignore[index]
    assert slot.read() is None
    assert not slot.publish(b"y" * (1 << 21))  # too large: refused, not truncated
    slot.close()
    slot.close()


def test_slot_is_shared_with_a_forked_child() -> None:
    slot = StatsSlot()
    pid = os.fork()
    if pid == 0:
        slot.publish(b'{"from": "child"}')
        os._exit(0)
    os.waitpid(pid, 0)
    assert slot.read() == {"from": "child"}
    slot.close()


def test_add_keeps_bounds_and_adds_counts() -> None:
    a = {"requests": {"HTTP/1.1": {"2xx": 2}}, "lag": {"le": [0.1], "cum": [1, 2], "sum": 0.5}}
    b = {"requests": {"HTTP/1.1": {"2xx": 3, "5xx": 1}}, "lag": {"le": [0.1], "cum": [0, 4], "sum": 1.0}}
    assert add(a, b) == {
        "requests": {"HTTP/1.1": {"2xx": 5, "5xx": 1}},
        "lag": {"le": [0.1], "cum": [1, 6], "sum": 1.5},
    }
    assert add({}, b) == b


def _families(view: ServerView) -> dict[str, list[tuple[dict[str, str], float]]]:
    body, _ = render(view, "text/plain")
    return {
        f.name: [(s.labels, s.value) for s in f.samples]
        for f in text_string_to_metric_families(body.decode())
    }


def test_retired_counters_are_added_to_the_label_and_locations_are_bounded() -> None:
    locations = {f"app.py:{i}": [1, 0.1] for i in range(40)}
    live = {
        "counters": {"blocks": {"count": 40, "seconds": 4.0, "locations": locations}},
        "gauges": {},
        "live": {},
    }
    retired = {"requests": {"HTTP/1.1": {"2xx": 7}}, "log": {"dropped": {"INFO": 3}, "lost": 1}}
    families = _families(ServerView([WorkerView("0", live, retired)], ready_workers=1))
    assert families["steadyloop_requests"] == [({"status_class": "2xx", "protocol": "HTTP/1.1"}, 7.0)]
    blocks = families["steadyloop_loop_blocks"]
    assert len(blocks) == 32 and {"worker": "0", "location": "other"} in [labels for labels, _ in blocks]
    assert sum(v for _, v in blocks) == 40
    assert families["steadyloop_log_records_dropped"] == [({"worker": "0", "level": "INFO"}, 3.0)]
    restarts = dict((labels["reason"], v) for labels, v in families["steadyloop_worker_restarts"])
    assert restarts == {"crashed": 0, "stuck_loop": 0, "max_requests": 0, "reload": 0}


def test_restart_reasons() -> None:
    def worker(phase: Phase, expected: bool = False, generation: int = 1) -> Worker:
        from steadyloop.observe.heartbeat import Heartbeat

        return Worker(1, generation, -1, Heartbeat(), 0.0, phase=phase, expected_exit=expected)

    assert restart_reason(worker(Phase.READY), 1, False) == "crashed"
    assert restart_reason(worker(Phase.BOOTING), 1, False) == "crashed"
    assert restart_reason(worker(Phase.KILLING), 1, False) == "stuck_loop"
    assert restart_reason(worker(Phase.RECYCLING, True), 1, False) == "max_requests"
    assert restart_reason(worker(Phase.STOPPING, True, generation=0), 1, False) == "reload"
    assert restart_reason(worker(Phase.STOPPING, True), 1, False) is None  # TTOU
    assert restart_reason(worker(Phase.READY), 1, True) is None  # shutting down


def test_publisher_encodes_recent_blocks_again_only_when_one_was_added() -> None:
    from steadyloop.observe.metrics.process import ProcessStats
    from steadyloop.observe.metrics.publisher import Publisher

    publisher = Publisher(ProcessStats(), None)
    blocks = [{"location": "a.py:1"}]

    def snapshot() -> dict[str, object]:
        return {"counters": {}, "gauges": {}, "live": {}, "recent_blocks": list(blocks)}

    assert json.loads(publisher.encode(snapshot()))["recent_blocks"] == [{"location": "a.py:1"}]
    blocks.append({"location": "b.py:2"})
    decoded = json.loads(publisher.encode(snapshot()))
    assert decoded["recent_blocks"][-1] == {"location": "b.py:2"}
    assert decoded.keys() == {"counters", "gauges", "live", "recent_blocks"}
