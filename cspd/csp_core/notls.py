"""Programs that never speak TLS load none of it.

The gateway listens on a unix socket and on loopback, and the sidecar talks to
it there: neither ever makes or takes a TLS connection.  Yet ``import asyncio``
imports :mod:`ssl` (OpenSSL's libssl and libcrypto), and aiohttp also
``_hashlib`` (libcrypto again): 4.5 MiB of a sidecar's resident memory, 7 MiB of
the gateway's, and part of every start (`make bench`, cases sidecar_idle_rss,
gateway_idle, cold_start).

asyncio and aiohttp are written to run where Python was built without OpenSSL
(``try: import ssl`` / ``except ImportError: ssl = None``), so a program's entry
point marks these modules absent before anything imports them.  :mod:`hashlib`
and :mod:`hmac` then use Python's own SHA code, which is all csp asks of them
(the WebSocket handshake's SHA-1, HMAC-SHA256 for agent credentials and the web
view).  Only entry points call :func:`forgo_tls`: a library, or a test process,
that imports csp keeps whatever TLS it has.
"""

from __future__ import annotations

import sys

# what loads OpenSSL: the ssl module, its C half, and hashlib's OpenSSL backend
TLS_MODULES = ("ssl", "_ssl", "_hashlib")


def forgo_tls() -> bool:
    """Mark the TLS modules absent, unless one is loaded already (then nothing is
    saved, and code holding it keeps working).  Returns whether they now are."""
    if any(sys.modules.get(name) is not None for name in TLS_MODULES):
        return False
    for name in TLS_MODULES:
        sys.modules[name] = None  # type: ignore[assignment]  # "import fails" by contract
    return True
