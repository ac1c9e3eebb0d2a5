"""Observability: non-blocking logging, access log, loop watchdog, counters.

This package is used by every other part of steadyloop and imports none of them.
"""
