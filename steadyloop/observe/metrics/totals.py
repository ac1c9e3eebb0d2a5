"""Adding counters up: a worker's with those of the workers that held its label before.

Counters in a snapshot are nested dicts of numbers, lists of numbers (a
histogram's cumulative counts) and histogram bounds (`le`, kept, never
added). `add(a, b)` returns their sum without changing either. A counter that
must not go backwards across a worker's restart is `retired + live`, where
`retired` is the sum of the final snapshots of the label's earlier workers.
"""

from __future__ import annotations

from typing import Any


def add(a: Any, b: Any) -> Any:
    """The sum of two counter trees of the same shape; keys missing on one side count as 0."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = dict(a)
        for key, value in b.items():
            if key == "le" or key not in out:
                out[key] = value
            else:
                out[key] = add(out[key], value)
        return out
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return b  # different shapes (bounds changed between releases): keep the newer
        return [add(x, y) for x, y in zip(a, b, strict=True)]
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a + b
    return b


def add_all(trees: list[Any]) -> Any:
    total: Any = {}
    for tree in trees:
        total = add(total, tree)
    return total
