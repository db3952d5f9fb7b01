"""Tie the agent's life to the sidecar's, even when the sidecar is SIGKILLed.

A sidecar that exits normally ends the agent's process group itself.  One that
is killed outright cannot, and agents such as Gemini CLI survive the SIGHUP of
their terminal closing.  So the agent is started with ``PR_SET_PDEATHSIG``:
the kernel sends it SIGTERM the moment the sidecar dies; the session leader's
exit then hangs up its terminal for the rest of the group.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import signal

PR_SET_PDEATHSIG = 1


def _prctl() -> object | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        return libc.prctl
    except (OSError, AttributeError):
        return None


_PRCTL = _prctl()


def die_with_parent() -> None:
    """``preexec_fn`` for the agent: runs in the child between fork and exec."""
    if _PRCTL is not None:
        _PRCTL(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)  # type: ignore[operator]
