"""``cspctl send`` by its fast path (no click) and by click: the same outcome, every time.

``python -m csp_cli`` (what ``cspctl`` runs) reads a plain ``send`` itself; the
click group is reached here directly.  Each command line goes through both, and
the exit code, what is printed and what the gateway stored must match.
"""

from __future__ import annotations

import json
import re
import sys

import pytest

from tests.conftest import CspEnv, GatewayProcess

TRACEBACK = "Traceback (most recent call last)"


def both(csp_env: CspEnv, *args: str, **kw: object) -> tuple[tuple[int, str, str], ...]:
    fast = csp_env.cspctl("send", *args, **kw)  # type: ignore[arg-type]
    full = csp_env.run(sys.executable, "-c", "from csp_cli.main import main; main()",
                       "send", *args, **kw)  # type: ignore[arg-type]
    out = []
    for r in (fast, full):
        assert TRACEBACK not in r.stderr + r.stdout
        # message ids and times differ between the two posts
        text = re.sub(r"#\d+", "#N", r.stderr)
        stdout = r.stdout
        if stdout.strip().startswith("{"):
            data = json.loads(stdout)
            data.pop("id"), data.pop("ts")
            stdout = json.dumps(data, sort_keys=True)
        out.append((r.returncode, stdout, text))
    return tuple(out)


@pytest.mark.parametrize("args", [
    ("@all", "hello from both"),
    ("hello", "--urgent", "-r", "main"),
    ("--json", "@all", "as json"),
    ("!urgent by its bang",),
    ("@all", ""),                       # empty: exit 2
    ("@nobody", "hi"),                  # unknown recipient: exit 5
    ("--room", "Bad Room", "hi"),       # invalid room: exit 2
    ("--as", "Not A Name", "hi"),       # a bad --as: exit 2 before any request
    ("--as=bob", "#main", "from bob"),
])
def test_fast_and_full_send_agree(csp_env: CspEnv, gateway: GatewayProcess,
                                  args: tuple[str, ...]) -> None:
    fast, full = both(csp_env, *args)
    assert fast == full


def test_text_from_stdin_both_ways(csp_env: CspEnv, gateway: GatewayProcess) -> None:
    fast, full = both(csp_env, "@all", "-", input="piped text\n")
    assert fast == full and fast[0] == 0


def test_gateway_down_exits_3_both_ways(csp_env: CspEnv) -> None:
    fast, full = both(csp_env, "@all", "nobody listens")
    assert fast == full and fast[0] == 3 and "not running" in fast[2]
