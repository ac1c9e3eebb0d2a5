"""What one `logger.info("x %s", 1)` costs the calling thread (the event loop).

    python bench/log_cost.py [--calls 50000] [--repeat 5]

Compares, each in a fresh process, alternately, `--repeat` times:

  stock       a stock StreamHandler writing to /dev/null (the cheapest sink there is)
  steadyloop  the same handler behind steadyloop's queue (setup_logging defaults)
  queuehandler  stdlib QueueHandler + QueueListener, for reference
  disabled    logger.debug() below the level: the floor every call pays

and prints medians of:

  caller CPU   CPU time of the calling thread per call (time.thread_time); this is
               what the loop pays, excluding time it waits for the GIL
  caller wall  wall time per call in a tight loop; includes GIL hand-offs to the
               writer thread, which does its formatting meanwhile
  p99 / max    per-call wall time percentiles (each call timed on its own)
  total CPU    process CPU per record, every thread, including the drain

The formatter is the demo app's ("%(asctime)s %(levelname)s %(name)s: %(message)s").
"""

from __future__ import annotations

import argparse
import json
import logging
import logging.handlers
import os
import queue
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
CONFIGS = ("stock", "steadyloop", "queuehandler", "disabled")


def child(config: str, calls: int) -> dict[str, Any]:
    devnull = open(os.devnull, "w")  # noqa: SIM115  lives as long as the process
    handler = logging.StreamHandler(devnull)
    handler.setFormatter(logging.Formatter(FORMAT))
    logger = logging.getLogger("bench")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    finish: Callable[[], None] = lambda: None  # noqa: E731
    if config == "queuehandler":
        q: queue.SimpleQueue[Any] = queue.SimpleQueue()
        listener = logging.handlers.QueueListener(q, handler)
        listener.start()
        logger.addHandler(logging.handlers.QueueHandler(q))
        finish = listener.stop
    else:
        logger.addHandler(handler)
    if config == "steadyloop":
        sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        from steadyloop.config import LogOptions
        from steadyloop.observe.logsetup import setup_logging

        pipeline = setup_logging(LogOptions(access_log=False, queue_records=calls * 2))
        finish = lambda: pipeline.shutdown(60)  # noqa: E731
    call = logger.debug if config == "disabled" else logger.info

    for _ in range(2000):  # warm up caches (Logger level cache, formatter, sinks)
        call("x %s", 1)

    # Tight loop: thread CPU and wall per call.
    cpu0, wall0, proc0 = time.thread_time_ns(), time.perf_counter_ns(), time.process_time_ns()
    for _ in range(calls):
        call("x %s", 1)
    cpu1, wall1 = time.thread_time_ns(), time.perf_counter_ns()
    # Each call timed on its own, for the tail.
    samples = []
    clock = time.perf_counter_ns
    for _ in range(calls):
        t = clock()
        call("x %s", 1)
        samples.append(clock() - t)
    finish()
    proc1 = time.process_time_ns()
    samples.sort()
    return {
        "caller_cpu_ns": (cpu1 - cpu0) / calls,
        "caller_wall_ns": (wall1 - wall0) / calls,
        "p50_ns": samples[len(samples) // 2],
        "p99_ns": samples[int(len(samples) * 0.99)],
        "max_ns": samples[-1],
        "total_cpu_ns": (proc1 - proc0) / (2 * calls),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--child", choices=CONFIGS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.calls)))
        return

    results: dict[str, list[dict[str, Any]]] = {c: [] for c in CONFIGS}
    for _ in range(args.repeat):
        for config in CONFIGS:  # alternate, so drift on a noisy machine hits all alike
            out = subprocess.run(
                [sys.executable, __file__, "--child", config, "--calls", str(args.calls)],
                check=True, capture_output=True, text=True,
            ).stdout
            results[config].append(json.loads(out))

    def med(config: str, key: str) -> float:
        return float(statistics.median(r[key] for r in results[config]))

    print(f"logger.info('x %s', 1): {args.calls} calls, median of {args.repeat} runs, ns per call")
    header = f"{'':14}{'caller CPU':>12}{'caller wall':>13}{'p50':>8}{'p99':>8}{'max':>10}{'total CPU':>11}"
    print(header)
    for config in CONFIGS:
        print(
            f"{config:14}{med(config, 'caller_cpu_ns'):12.0f}{med(config, 'caller_wall_ns'):13.0f}"
            f"{med(config, 'p50_ns'):8.0f}{med(config, 'p99_ns'):8.0f}{med(config, 'max_ns'):10.0f}"
            f"{med(config, 'total_cpu_ns'):11.0f}"
        )
    ratio = med("steadyloop", "caller_cpu_ns") / med("stock", "caller_cpu_ns")
    print(f"steadyloop / stock, caller CPU: {ratio:.2f}")


if __name__ == "__main__":
    main()
