"""What ``cspctl`` runs first: a plain ``cspctl send`` without click, all else with it.

Start-up is nearly all that a one-shot command costs, and importing click alone
takes longer than a message's whole trip through the gateway.  So a ``send``
command line made only of words, ``--room``/``-r``, ``--as``, ``--urgent`` and
``--json`` is read here and sent with :mod:`csp_core.quick` (one request, the
standard library only).  Every other command line, and every ``send`` this
reader does not take in whole (``--help``, ``--wait``, an unknown option,
``--``, an option value that starts with ``-``), goes to the click group in
:mod:`csp_cli.main`, which reads it as it always did.  ``send`` in
:mod:`csp_cli.messages_cmd` stays the full command; this is its fast path and
must do the same (the tests run both).
"""

from __future__ import annotations

import sys

from csp_core import quick
from csp_core.endpoint import speaker
from csp_core.errors import BadRequest, CspError
from csp_core.names import API, HUMAN, check_name, split_address_words

from .runner import explain, fail

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from typing import Any

# send's options as click declares them (messages_cmd.send): option -> parameter
VALUED = {"--room": "room", "-r": "room", "--as": "as_name"}
FLAGS = {"--urgent": "urgent", "--json": "as_json"}


def main() -> None:
    """The ``cspctl`` executable."""
    args = sys.argv[1:]
    plain = read_send(args[1:]) if args[:1] == ["send"] else None
    if plain is None:
        from .main import main as with_click

        with_click()
        return
    try:
        send(**plain)
    except (KeyboardInterrupt, EOFError):  # as click says it
        sys.stderr.write("\nAborted!\n")
        sys.exit(1)


def read_send(args: list[str]) -> dict[str, Any] | None:
    """``send``'s parameters as click would read ``args``; None if this reader cannot
    be sure of that (click then reads them, and says what is wrong with them)."""
    line: dict[str, Any] = {"words": [], "room": None, "as_name": None, "urgent": False,
                            "as_json": False}
    at = 0
    while at < len(args):
        arg = args[at]
        at += 1
        if arg == "-" or not arg.startswith("-"):
            line["words"].append(arg)
            continue
        name, eq, value = arg.partition("=") if arg.startswith("--") else (arg, "", "")
        if name in FLAGS and not eq:
            line[FLAGS[name]] = True
        elif name in VALUED:
            if not eq:
                if at == len(args) or args[at].startswith("-"):
                    return None
                value, at = args[at], at + 1
            line[VALUED[name]] = value
        else:
            return None
    return line


def send(words: list[str], room: str | None, as_name: str | None, urgent: bool,
         as_json: bool) -> None:
    """Post one message, as ``cspctl send`` does; errors become their exit codes."""
    try:
        agent = speaker(as_name)
        if agent != HUMAN:
            check_name(agent)  # it travels in a header: a bad name is bad input
        body = message_body(words, room, urgent)
        stored = quick.call("POST", f"{API}/messages", body=body, agent=agent)
    except CspError as exc:
        fail(explain(exc), exc.exit_code)
    report(stored, as_json)


def message_body(words: list[str], room: str | None, urgent: bool) -> dict[str, object]:
    """What ``send`` posts: its address words, its text (``-`` or none: stdin), and a
    leading ``!`` made urgent.  BadRequest for no text at all."""
    addresses, rest = split_address_words(words)
    if not rest or rest == ["-"]:
        if sys.stdin.isatty() and not rest:
            raise BadRequest("no text: give it as an argument, or '-' to read stdin")
        text = sys.stdin.read()
    else:
        text = " ".join(rest)
    text = text.rstrip("\n")
    if text.startswith("!"):
        urgent, text = True, text[1:].lstrip()
    if not text.strip():
        raise BadRequest("empty message")
    body: dict[str, object] = {"to": addresses or ["@all"], "content": text, "urgent": urgent}
    if room:
        body["room"] = room
    return body


def report(stored: dict[str, Any], as_json: bool) -> None:
    """What ``send`` prints once the gateway has stored the message."""
    if as_json:
        import json

        from csp_core.protocol import Message  # the full message type: --json only

        sys.stdout.write(json.dumps(Message.from_json(stored).to_json(), indent=2,
                                    ensure_ascii=False) + "\n")
    else:
        to = ", ".join(f"@{t}" for t in stored["to"])
        sys.stderr.write(f"sent #{int(stored['id'])} to {to} in #{stored['room']}\n")


if __name__ == "__main__":
    main()
