"""csp's shared core: what the gateway, the sidecar and cspctl all speak.

The wire protocol and its checks (``protocol``, ``sanitize``), the error hierarchy
(``errors``), where things live (``paths``, ``endpoint``), the token and the
configuration (``auth``, ``config``), the D-Bus names and connection (``busnames``,
``sessionbus``), and the gateway's clients (``client`` for long-lived asyncio use,
``quick`` for one blocking request).  Nothing here imports the daemon (``cspd``),
the sidecar (``csp_sidecar``) or the CLI (``csp_cli``).
"""

from __future__ import annotations

__version__ = "0.1.0"
