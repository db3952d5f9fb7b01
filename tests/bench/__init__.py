"""Benchmarks (``make bench``): figures, not tests. See :mod:`tests.bench.run`."""
