from __future__ import annotations

import json

from tests.conftest import CspEnv, GatewayProcess


def test_send_then_history_roundtrip(csp_env: CspEnv, gateway: GatewayProcess) -> None:
    sent = csp_env.cspctl("send", "@all", "hello", "world", "--json")
    assert sent.returncode == 0, sent.stderr
    message = json.loads(sent.stdout)
    assert message["content"] == "hello world" and message["from"] == "human"
    hist = csp_env.cspctl("history", "--json")
    assert [m["id"] for m in json.loads(hist.stdout)] == [message["id"]]


def test_send_without_gateway_fails_clearly(csp_env: CspEnv) -> None:
    r = csp_env.cspctl("send", "@all", "hello")
    assert r.returncode == 3
    assert "gateway is not running" in r.stderr
    assert "Traceback" not in r.stderr
