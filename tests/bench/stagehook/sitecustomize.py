"""Loaded by every Python process of a staged bench pass (this directory leads its
PYTHONPATH): times the stages of one message's way through csp when
``CSP_BENCH_STAGES`` names a directory.  See :mod:`csp_bench_stages`."""

import os

if os.environ.get("CSP_BENCH_STAGES"):
    import csp_bench_stages

    csp_bench_stages.install(os.environ["CSP_BENCH_STAGES"])
