"""Screen capture end to end: csp-sidecar runs a CLI without hooks in a real tmux pane.

The CLI (tests/tools/markdown_cli.py) echoes what is typed, spins, and answers
every prompt with the 46-line markdown reply, its long lines wrapped by the
terminal at the pane's width.  What the chat gets must be each reply word for
word, once: at 40, 66 and 200 columns, and after resizes (with the CLI drawing
everything again, as Ink-based CLIs do, or not).
"""

from __future__ import annotations

import json
import shlex
import sys

import pytest

from tests.conftest import REPO, CspEnv, GatewayProcess
from tests.polling import wait_for
from tests.tmuxtest import Pane, TmuxServer
from tests.tools.long_reply import long_reply
from tests.tools.markdown_cli import BANNER

HEIGHT = 30
TAG = "[human → @md]"


def start(env: CspEnv, tmux: TmuxServer, width: int, redraw: bool) -> Pane:
    cli = [sys.executable, "-m", "tests.tools.markdown_cli"]  # run from the repository
    if redraw:
        cli.append("--redraw")
    command = [sys.executable, "-m", "csp_sidecar", "--name", "md", "--profile", "generic",
               "--", *cli]
    pane = tmux.new_pane(f"cd {shlex.quote(str(REPO))} && {shlex.join(command)}",
                         width=width, height=HEIGHT)
    pane.wait_text(BANNER[:30])
    wait_for(lambda: state(env) == "ready", what="md ready")
    return pane


def state(env: CspEnv) -> str:
    r = env.cspctl("agents", "--json")
    return next((str(a["state"]) for a in json.loads(r.stdout or "[]") if a["name"] == "md"),
                "")


def replies(env: CspEnv) -> list[str]:
    """What md shared, its banner aside."""
    r = env.cspctl("history", "--json", "--limit", "500")
    assert r.returncode == 0, r.stderr
    return [str(m["content"]) for m in json.loads(r.stdout)
            if m["kind"] == "output" and m["from"] == "md" and m["content"] != BANNER]


def ask(env: CspEnv, question: str, turn: int) -> None:
    assert env.cspctl("send", "@md", question).returncode == 0
    wait_for(lambda: len(replies(env)) >= turn, what=f"reply {turn}")
    wait_for(lambda: state(env) == "ready", what="md ready again")


def resize(tmux: TmuxServer, pane: Pane, width: int) -> None:
    tmux.run("resize-window", "-t", pane.target.split(":")[0], "-x", str(width),
             "-y", str(HEIGHT))
    wait_for(lambda: pane.info("#{pane_width}") == str(width), what=f"the pane {width} wide")


@pytest.mark.parametrize(("width", "redraw"), [(40, False), (66, True), (200, False)])
def test_each_reply_is_shared_word_for_word_once(
        width: int, redraw: bool, csp_env: CspEnv, gateway: GatewayProcess,
        tmux: TmuxServer) -> None:
    pane = start(csp_env, tmux, width, redraw)
    questions = [f"question {n}: does the gate hold while the human types?" for n in (1, 2, 3)]
    expected = []
    for turn, question in enumerate(questions, 1):
        ask(csp_env, question, turn)
        expected.append(long_reply(f"{TAG} {question}", turn))
        assert replies(csp_env) == expected
        # resized twice between turns (with --redraw the CLI draws it all again)
        for new_width in (width + 23, max(39, width - 17)):
            resize(tmux, pane, new_width)
        wait_for(lambda: state(csp_env) == "ready", what="md ready after the resizes")
    ask(csp_env, "and one more", 4)
    assert replies(csp_env) == [*expected, long_reply(f"{TAG} and one more", 4)]
