"""A process that stands in for a sidecar on the session bus (no PTY, no child).

``python -m tests.tools.bus_agent NAME [ROOM]`` exports a
:class:`~tests.fake_agent.FakeControl` with the real D-Bus service, prints
``ready <bus name>`` once it owns the name, and runs until killed.  A taken
name exits with the error's exit code, as the sidecar would.
"""

from __future__ import annotations

import asyncio
import signal
import sys

from csp_core.errors import CspError
from csp_sidecar.dbus_service import AgentBusService
from tests.fake_agent import FakeControl


async def main(name: str, room: str) -> int:
    service = AgentBusService(FakeControl(name=name, room=room))
    try:
        await service.start()
    except CspError as exc:
        print(f"error: {exc.message}", file=sys.stderr, flush=True)
        return exc.exit_code
    print(f"ready {service.name}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    await stop.wait()
    await service.stop()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "lobby")))
