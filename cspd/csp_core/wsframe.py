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


class FrameReader:
    """Frames out of a byte stream, as they complete (no I/O: :meth:`feed` bytes in,
    :meth:`next` frames out).

    ``limit`` bounds one frame's payload; a larger one raises ValueError before its
    bytes are waited for.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._data = bytearray()

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        self._data += data

    def next(self) -> tuple[bool, int, bytes] | None:
        """The next complete frame, (fin, opcode, payload); None until one is whole."""
        data = self._data
        if len(data) < 2:
            return None
        first, second = data[0], data[1]
        size, at = second & 0x7F, 2
        if size == 126:
            if len(data) < 4:
                return None
            size, at = int.from_bytes(data[2:4], "big"), 4
        elif size == 127:
            if len(data) < 10:
                return None
            size, at = int.from_bytes(data[2:10], "big"), 10
        if size > self.limit:
            raise ValueError(f"a frame of {size} bytes (at most {self.limit})")
        mask = b""
        if second & 0x80:
            mask, at = bytes(data[at:at + 4]), at + 4
        if len(data) < at + size:
            return None
        payload = bytes(data[at:at + size])
        del data[:at + size]
        return bool(first & 0x80), first & 0x0F, masked(payload, mask) if mask else payload
