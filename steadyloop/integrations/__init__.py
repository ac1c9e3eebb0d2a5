"""Adapters that run steadyloop inside other servers' process managers (gunicorn)."""
