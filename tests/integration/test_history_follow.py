"""`cspctl history --follow` prints live messages and survives a gateway restart."""

from __future__ import annotations

import json
import subprocess
import sys
import threading

from tests.conftest import CspEnv, GatewayProcess
from tests.polling import wait_for


def test_follow_picks_up_after_a_gateway_restart(csp_env: CspEnv,
                                                 gateway: GatewayProcess) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "csp_cli", "history", "--follow", "--json"],
                            env=csp_env.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    seen: list[str] = []
    reader = threading.Thread(target=lambda: seen.extend(
        json.loads(line)["content"] for line in proc.stdout or []), daemon=True)
    reader.start()
    try:
        assert csp_env.cspctl("send", "before the restart").returncode == 0
        wait_for(lambda: "before the restart" in seen, what="the first live message")
        gateway.stop()
        gateway.start()
        assert csp_env.cspctl("send", "after the restart").returncode == 0
        wait_for(lambda: "after the restart" in seen, what="a message after the restart")
        assert seen.count("before the restart") == 1  # nothing shown twice
    finally:
        proc.terminate()
        proc.wait(timeout=10)
