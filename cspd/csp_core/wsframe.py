"""WebSocket frames (RFC 6455, section 5), built by hand where a library's would cost.

Two writers use this: the sidecar's standard-library client
(:mod:`csp_core.streamclient`, whose frames are masked, as a client's must be),
and the gateway's fan-out, which writes a message frame to every agent's
connection in one pass instead of waking one writer task per agent
(:mod:`cspd.hub`).
"""

from __future__ import annotations

import os

TEXT, BINARY, CLOSE, PING, PONG = 0x1, 0x2, 0x8, 0x9, 0xA


def masked(payload: bytes, mask: bytes) -> bytes:
    """``payload`` XOR the repeated 4-byte ``mask`` (one big-integer XOR, not a loop)."""
    size = len(payload)
    if not size:
        return payload
    key = (mask * (size // 4 + 1))[:size]
    return (int.from_bytes(payload, "little") ^ int.from_bytes(key, "little")).to_bytes(
        size, "little")


def frame(opcode: int, payload: bytes, *, mask: bool = False) -> bytes:
    """One final (unfragmented) frame; ``mask`` for a client's, none for a server's."""
    size = len(payload)
    bit = 0x80 if mask else 0
    if size < 126:
        head = bytes([0x80 | opcode, bit | size])
    elif size < 1 << 16:
        head = bytes([0x80 | opcode, bit | 126]) + size.to_bytes(2, "big")
    else:
        head = bytes([0x80 | opcode, bit | 127]) + size.to_bytes(8, "big")
    if not mask:
        return head + payload
    key = os.urandom(4)
    return head + key + masked(payload, key)
