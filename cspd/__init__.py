"""csp gateway daemon and the core shared by the sidecar and cspctl."""

from __future__ import annotations

__version__ = "0.1.0"
