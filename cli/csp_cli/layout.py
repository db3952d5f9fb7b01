"""The window layout of ``cspctl attach``: the chat on top, the agents below.

tmux's built-in layouts cannot say "one pane on top, a grid of up to three
columns underneath", so the layout is written out as a tmux layout string
(the same text ``#{window_layout}`` shows) and applied with ``select-layout``.
Computing it here keeps it the same after every spawn, whatever tmux did.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

MAX_SIDE_BY_SIDE = 3


def checksum(body: str) -> str:
    """tmux's layout checksum (layout_checksum in layout-custom.c)."""
    csum = 0
    for ch in body:
        csum = (csum >> 1) + ((csum & 1) << 15)
        csum = (csum + ord(ch)) & 0xFFFF
    return f"{csum:04x}"


def split_sizes(total: int, parts: int) -> list[int]:
    """Split ``total`` cells into ``parts`` cells separated by one-cell borders."""
    usable = total - (parts - 1)
    base, extra = divmod(usable, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


def grid_shape(count: int) -> tuple[int, int]:
    """(columns, rows) for the agents: side by side up to three, tiled beyond."""
    if count <= MAX_SIDE_BY_SIDE:
        return count, 1
    cols = min(MAX_SIDE_BY_SIDE, math.ceil(math.sqrt(count)))
    return cols, math.ceil(count / cols)


def _leaf(w: int, h: int, x: int, y: int, pane: str) -> str:
    return f"{w}x{h},{x},{y},{pane.lstrip('%')}"


def _row(w: int, h: int, x: int, y: int, panes: Sequence[str]) -> str:
    if len(panes) == 1:
        return _leaf(w, h, x, y, panes[0])
    cells, left = [], x
    for pane, cw in zip(panes, split_sizes(w, len(panes)), strict=True):
        cells.append(_leaf(cw, h, left, y, pane))
        left += cw + 1
    return f"{w}x{h},{x},{y}{{" + ",".join(cells) + "}"


def _grid(w: int, h: int, x: int, y: int, panes: Sequence[str]) -> str:
    cols, rows = grid_shape(len(panes))
    if rows == 1:
        return _row(w, h, x, y, panes)
    cells = []
    top = y
    for r, rh in enumerate(split_sizes(h, rows)):
        cells.append(_row(w, rh, x, top, panes[r * cols:(r + 1) * cols]))
        top += rh + 1
    return f"{w}x{h},{x},{y}[" + ",".join(cells) + "]"


def layout_string(width: int, height: int, chat: str, agents: Sequence[str],
                  chat_percent: int = 30) -> str:
    """The layout for a window of ``width`` x ``height`` cells.

    ``chat`` and ``agents`` are pane ids (``%3``); the chat takes ``chat_percent``
    of the height (at least 5 rows) and the agents share the rest.
    """
    if not agents:
        body = _leaf(width, height, 0, 0, chat)
    else:
        chat_h = max(5, min(height - 4, height * chat_percent // 100))
        rest = height - chat_h - 1
        body = (f"{width}x{height},0,0["
                + _leaf(width, chat_h, 0, 0, chat) + ","
                + _grid(width, rest, 0, chat_h + 1, agents) + "]")
    return f"{checksum(body)},{body}"
