"""A quick, derandomized fuzz run of the request path (see fuzz_target.py for the invariants).

Long runs: `python bench/fuzz.py --minutes 30`.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.http.fuzz_target import (
    check_input,
    check_pipeline,
    check_splits,
    corpus,
    cuts_for,
    inputs,
    pipelines,
)

QUICK = settings(
    max_examples=150,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@QUICK
@given(st.data())
def test_generated_and_mutated_requests(data: st.DataObject) -> None:
    request = data.draw(inputs)
    check_input(request, data.draw(cuts_for(request)))


@QUICK
@given(st.data())
def test_pipelined_requests_keep_their_own_bytes(data: st.DataObject) -> None:
    parts = data.draw(pipelines)
    check_pipeline(parts, data.draw(cuts_for(b"".join(parts))))


@pytest.mark.parametrize("index", range(len(corpus())))
def test_seed_corpus_split_everywhere(index: int) -> None:
    entry = corpus()[index]
    for cut in range(1, len(entry)):
        check_splits(entry, [cut])
    check_input(entry, [])
