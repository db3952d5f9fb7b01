"""csp-sidecar: a PTY proxy that puts an agent CLI into the group chat."""

from __future__ import annotations
