"""Counted nouns for log lines: "1 worker", "2 workers", never "1 workers"."""

from __future__ import annotations


def counted(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"
