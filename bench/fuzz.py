"""Long fuzz runs of the HTTP/1.1 request path (the suite runs the same properties briefly).

    python bench/fuzz.py [--minutes 10] [--batch 2000] [--seed N]

Runs the properties of tests/http/fuzz_target.py -- no exception but ProtocolError leaves
the parser, the same bytes split differently give the same answer, no request carries
another's bytes, and h11 agrees or the difference is documented in docs/http.md -- on
random generated, mutated and pipelined requests, in batches, until the time is up.
Hypothesis prints the smallest failing input; add it to tests/http/corpus/ once fixed.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from tests.http.fuzz_target import check_input, check_pipeline, cuts_for, inputs, pipelines


def batch(examples: int, batch_seed: int) -> None:
    config = settings(
        max_examples=examples,
        database=None,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )

    @seed(batch_seed)
    @config
    @given(st.data())
    def single(data: st.DataObject) -> None:
        request = data.draw(inputs)
        check_input(request, data.draw(cuts_for(request)))

    @seed(batch_seed)
    @config
    @given(st.data())
    def pipelined(data: st.DataObject) -> None:
        parts = data.draw(pipelines)
        check_pipeline(parts, data.draw(cuts_for(b"".join(parts))))

    single()
    pipelined()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--batch", type=int, default=2000, help="examples per property per batch")
    parser.add_argument("--seed", type=int, default=None, help="first batch's seed (default: random)")
    args = parser.parse_args()
    next_seed = args.seed if args.seed is not None else random.randrange(2**32)
    deadline = time.monotonic() + args.minutes * 60
    batches = 0
    started = time.monotonic()
    while time.monotonic() < deadline:
        print(f"batch {batches + 1}: seed {next_seed}", flush=True)
        batch(args.batch, next_seed)
        batches += 1
        next_seed += 1
    took = time.monotonic() - started
    print(f"{batches} batches, {batches * args.batch * 2} examples in {took:.0f} s: no property failed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
