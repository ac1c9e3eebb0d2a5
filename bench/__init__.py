"""The side-by-side benchmark harness; see bench/README.md."""
