"""cspd, the gateway daemon: HTTP and WebSocket API, MCP, routing, storage, presence.

Built on the shared core (``csp_core``); neither the sidecar nor cspctl imports it.
"""

from __future__ import annotations

from csp_core import __version__

__all__ = ["__version__"]
