"""Identity comes from the connection (issue #10): real gateway, sidecars, tmux panes.

A process inside an agent's pane is that agent, whatever header or token it
sends; control is the owner's; a name registers once; on TCP the agent's own
credential (in its environment, never the owner's token) says who it is.
"""

from __future__ import annotations

import json
import shlex
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO, CspEnv, GatewayProcess
from tests.polling import wait_for
from tests.tmuxtest import TmuxServer

SIDECAR = [sys.executable, "-m", "csp_sidecar"]
FAKE_CLI = [sys.executable, str(REPO / "tests" / "tools" / "fake_cli.py")]

# run inside agent "late": try to pass for "victim" with the owner's token read
# from its file, and with late's own credential from its environment
ROGUE = r'''
import asyncio, http.client, json, os, socket, sys

RUN = os.path.join(os.environ["XDG_RUNTIME_DIR"], "csp")
out, ids = sys.argv[1], [int(i) for i in sys.argv[2].split(",")]


class Unix(http.client.HTTPConnection):
    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.connect(os.path.join(RUN, "gateway.sock"))


def call(method, path, body, bearer, agent=None):
    headers = {"Authorization": "Bearer " + bearer, "Content-Type": "application/json"}
    if agent:
        headers["X-CSP-Agent"] = agent
    conn = Unix("localhost")
    conn.request(method, path, json.dumps(body), headers)
    resp = conn.getresponse()
    status, data = resp.status, json.loads(resp.read() or b"null")
    conn.close()
    return [status, data]


async def register(bearer):
    from csp_core.client import GatewayClient
    from csp_core.errors import CspError
    async with GatewayClient(os.path.join(RUN, "gateway.sock"), token=bearer) as client:
        try:
            ws = await client.stream(agent="victim2")
        except CspError as exc:
            return exc.code
        await ws.close()
        return "registered"


bearers = {"token": open(os.path.join(RUN, "token")).read().strip(),
           "credential": os.environ["CSP_AGENT_TOKEN"]}
results = {}
for kind, bearer in bearers.items():
    results[kind] = {
        "post_as_victim": call("POST", "/v1/messages",
                               {"to": ["@all"], "content": "I am victim"}, bearer, "victim"),
        "post_as_human": call("POST", "/v1/messages",
                              {"to": ["@all"], "content": "I am human"}, bearer, "human"),
        "ack_as_victim": call("POST", "/v1/ack", {"ids": ids}, bearer, "victim"),
        "ack_as_itself": call("POST", "/v1/ack", {"ids": ids}, bearer),
        "resume_victim": call("POST", "/v1/agents/victim/control", {"action": "resume"},
                              bearer),
        "post_plain": call("POST", "/v1/messages",
                           {"to": ["@human"], "content": "plain " + kind}, bearer),
        "register": asyncio.run(register(bearer)),
    }
with open(out, "w") as fh:
    json.dump(results, fh)
'''


def _agents(env: CspEnv) -> dict[str, dict[str, Any]]:
    r = env.cspctl("agents", "--json")
    assert r.returncode == 0, r.stderr
    return {row["name"]: row for row in json.loads(r.stdout)}


def _state(env: CspEnv, name: str) -> str:
    return str(_agents(env).get(name, {}).get("state"))


def _prompts(log: Path) -> list[str]:
    if not log.exists():
        return []
    return [r["prompt"] for r in map(json.loads, log.read_text().splitlines()) if "prompt" in r]


def _sidecar(name: str, *command: str, profile: str) -> str:
    return shlex.join([*SIDECAR, "--name", name, "--profile", profile, "--", *command])


def test_a_process_in_an_agents_pane_cannot_pass_for_another_agent(
        csp_env: CspEnv, gateway: GatewayProcess, tmux: TmuxServer) -> None:
    log = csp_env.root / "fake_cli.log"
    csp_env.env.update({"FAKECLI_LOG": str(log), "FAKECLI_THINK": "0.2"})
    victim = tmux.new_pane(_sidecar("victim", *FAKE_CLI, profile="claude"))
    victim.wait_text("fake agent ready")
    wait_for(lambda: _state(csp_env, "victim") == "ready", what="victim ready")
    late = tmux.new_pane(_sidecar("late", "bash", "--norc", "--noprofile", profile="shell"))
    wait_for(lambda: _agents(csp_env).get("late", {}).get("online"), what="late online")

    # from an agent, "/pause" is text: the victim reads it and is not paused
    late.type(f"{shlex.quote(sys.executable)} -m csp_cli send @victim /pause; "
              "echo sent-$?\r")
    late.wait_text("sent-0")
    wait_for(lambda: any("/pause" in p and "late" in p for p in _prompts(log)),
             what="late's /pause typed in as text")
    assert _state(csp_env, "victim") != "paused"

    # from the owner it is control
    assert csp_env.cspctl("send", "@victim", "/pause").returncode == 0
    wait_for(lambda: _state(csp_env, "victim") == "paused", what="victim paused")
    r = csp_env.cspctl("send", "@victim", "for the victim only", "--json")
    assert r.returncode == 0, r.stderr
    mid = json.loads(r.stdout)["id"]
    wait_for(lambda: _agents(csp_env)["victim"]["pending"] == 1, what="the message pending")

    out = csp_env.root / "rogue.json"
    script = csp_env.root / "rogue.py"
    script.write_text(ROGUE)
    late.type(f"{shlex.quote(sys.executable)} {script} {out} {mid}; echo rogue-$?\r")
    late.wait_text("rogue-0", timeout=30)
    results = json.loads(out.read_text())
    for kind in ("token", "credential"):
        got = results[kind]
        for attempt in ("post_as_victim", "post_as_human", "ack_as_victim", "resume_victim"):
            status, body = got[attempt]
            assert status == 403, (kind, attempt, body)
            assert body["error"] == "forbidden"
        assert "belongs to agent 'late'" in got["post_as_victim"][1]["message"], got
        assert got["ack_as_itself"] == [200, {"acked": 0}], kind
        assert got["post_plain"][0] == 201 and got["post_plain"][1]["from"] == "late", kind
        assert got["register"] == "forbidden", kind

    late.type(f"{shlex.quote(sys.executable)} -m csp_cli resume victim; echo resume-$?\r")
    late.wait_text("resume-4")  # control is the owner's, over the bus too

    # nothing was taken from the victim: still paused, still holding its message ...
    assert _state(csp_env, "victim") == "paused"
    assert _agents(csp_env)["victim"]["pending"] == 1
    history = json.loads(csp_env.cspctl("history", "--json", "--limit", "500").stdout)
    assert not [m for m in history if m["content"] in ("I am victim", "I am human")]
    # ... and it gets it once the owner resumes it
    assert csp_env.cspctl("resume", "victim").returncode == 0
    wait_for(lambda: any("for the victim only" in p for p in _prompts(log)),
             what="the victim to receive its message")
    wait_for(lambda: _agents(csp_env)["victim"]["pending"] == 0, what="the victim's ack")


REGISTER = r'''
import asyncio, sys
from csp_core.client import GatewayClient
from csp_core.errors import CspError


async def main():
    async with GatewayClient() as client:
        print("ready", flush=True)
        sys.stdin.readline()  # "go": all of us at once
        try:
            ws = await client.stream(agent="twin")
            frame = await ws.receive_json(timeout=10)
            print(frame.get("type") if frame.get("type") == "hello" else frame.get("error"),
                  flush=True)
        except CspError as exc:
            print(exc.code, flush=True)
            return
        sys.stdin.read()  # hold the name until the test is done
        await ws.close()

asyncio.run(main())
'''


def test_two_simultaneous_registrations_of_one_name(csp_env: CspEnv,
                                                    gateway: GatewayProcess) -> None:
    procs = [subprocess.Popen([sys.executable, "-c", REGISTER], env=csp_env.env, text=True,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE)
             for _ in range(6)]
    try:
        for p in procs:
            assert p.stdout is not None and p.stdout.readline().strip() == "ready"
        for p in procs:
            assert p.stdin is not None
            p.stdin.write("go\n")
            p.stdin.flush()
        outcomes = sorted(p.stdout.readline().strip() for p in procs if p.stdout)
        assert outcomes == ["conflict"] * 5 + ["hello"], outcomes
        assert _agents(csp_env)["twin"]["online"] is True
    finally:
        for p in procs:
            p.communicate(timeout=30)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


CHILD = r'''
import http.client, json, os, subprocess, sys
out, owner_token, url = sys.argv[1], sys.argv[2], os.environ["CSP_GATEWAY"]
port = int(url.rsplit(":", 1)[1])
cred = os.environ.get("CSP_AGENT_TOKEN", "")


def post(headers):
    conn = http.client.HTTPConnection("127.0.0.1", port)
    conn.request("POST", "/v1/messages", json.dumps({"to": ["@all"], "content": "claim"}),
                 {"Content-Type": "application/json", **headers})
    resp = conn.getresponse()
    return [resp.status, json.loads(resp.read())]


sent = subprocess.run([sys.executable, "-m", "csp_cli", "send", "over tcp", "--json"],
                      capture_output=True, text=True)
json.dump({
    "credential": cred,
    "token_in_env": any(owner_token in v for v in os.environ.values()),
    "send": [sent.returncode, sent.stdout, sent.stderr],
    "as_human": post({"Authorization": "Bearer " + cred, "X-CSP-Agent": "human"}),
    "owner_token_as_self": post({"Authorization": "Bearer " + owner_token,
                                 "X-CSP-Agent": "tcpagent"}),
}, open(out, "w"))
'''


@pytest.fixture
def tcp_gateway(csp_env: CspEnv) -> Any:
    port = _free_port()
    csp_env.config.parent.mkdir(parents=True, exist_ok=True)
    csp_env.config.write_text(f"[gateway]\ntcp_port = {port}\n")
    log = open(csp_env.root / "cspd-tcp.log", "a")  # noqa: SIM115 (closed below)
    proc = subprocess.Popen([sys.executable, "-m", "cspd", "--tcp"], env=csp_env.env,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: csp_env.cspctl("gateway", "status", extra_env={
            "CSP_GATEWAY": url}).returncode == 0 or proc.poll() is not None, what="cspd --tcp")
        assert proc.poll() is None, (csp_env.root / "cspd-tcp.log").read_text()
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
        log.close()


def test_on_tcp_the_agent_carries_its_own_credential(csp_env: CspEnv,
                                                     tcp_gateway: str) -> None:
    out = csp_env.root / "child.json"
    script = csp_env.root / "child.py"
    script.write_text(CHILD)
    owner_token = csp_env.token_file.read_text().strip()
    r = csp_env.run(*SIDECAR, "--name", "tcpagent", "--gateway", tcp_gateway, "--",
                    sys.executable, str(script), str(out), owner_token,
                    extra_env={"CSP_GATEWAY": tcp_gateway})
    assert r.returncode == 0, r.stderr
    got = json.loads(out.read_text())
    assert got["credential"].startswith("agent.tcpagent.")
    assert got["token_in_env"] is False  # the agent's environment never holds the token
    code, stdout, stderr = got["send"]
    assert code == 0, stderr
    assert json.loads(stdout)["from"] == "tcpagent"  # its cspctl speaks as the agent
    assert got["as_human"][0] == 403
    # with the owner's token TCP cannot tell; an online agent's name is still refused
    assert got["owner_token_as_self"][0] == 403
