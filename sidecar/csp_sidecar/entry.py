"""``csp-sidecar``'s entry point: what must be settled before anything is imported.

The sidecar reaches the gateway on a unix socket or loopback and never speaks
TLS, so it loads none (:mod:`csp_core.notls`: 4.5 MiB of its resident memory,
each agent's).
"""

from __future__ import annotations


def main() -> None:
    from csp_core.notls import forgo_tls

    forgo_tls()
    from .main import main as run

    run()
