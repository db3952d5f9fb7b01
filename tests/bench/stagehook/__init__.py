"""Loaded into the gateway and the sidecar of the bench's staged pass (see
:mod:`tests.bench.stages`): this directory goes first on their ``PYTHONPATH``."""
