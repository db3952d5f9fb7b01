"""cspctl: everything a person or a script does with csp."""

from __future__ import annotations
