"""csp's shared core: what the gateway, the sidecar and cspctl all speak.

The wire protocol and its checks (``protocol``, its light half ``names``,
``sanitize``), the error hierarchy (``errors``), where things live (``paths``,
``endpoint``), the token and the configuration (``auth``, ``config``), the D-Bus
names and connection (``busnames``, ``sessionbus``), and the gateway's clients
(``client`` on aiohttp for long-lived use, ``streamclient`` for a sidecar's link,
``quick`` for one blocking request).  Nothing here imports the daemon (``cspd``),
the sidecar (``csp_sidecar``) or the CLI (``csp_cli``).

Start-up is part of every program's cost (``cspctl send`` has 40 ms in all), so
what a one-shot command imports (``errors``, ``names``, ``paths``, ``endpoint``,
``auth``, ``quick``) imports nothing heavy: annotations-only imports sit behind
``TYPE_CHECKING = False`` (typing itself costs a few ms), and modules only the
gateway needs (hashing, random) are imported where used.
"""

from __future__ import annotations

__version__ = "0.1.0"
