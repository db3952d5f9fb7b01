"""``cspd``'s entry point: what must be settled before anything is imported.

The gateway never speaks TLS, so it loads none (:mod:`csp_core.notls`: 7 MiB of
its memory and part of its start).  uvloop (``CSP_EVENT_LOOP=uvloop``) imports
:mod:`ssl` itself, so with it TLS stays.
"""

from __future__ import annotations

import os


def main() -> None:
    from csp_core.notls import forgo_tls

    if os.environ.get("CSP_EVENT_LOOP") != "uvloop":
        forgo_tls()
    from .main import main as run

    run()
