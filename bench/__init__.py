"""Benchmarks that print figures, run from the repository root as modules (``python -m bench.NAME``)."""
