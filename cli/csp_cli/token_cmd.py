"""``cspctl token``: show or rotate the gateway's token."""

from __future__ import annotations

import os

import click

from csp_core import paths
from csp_core.auth import ensure_token, rotate_token
from csp_core.errors import Forbidden

from .runner import edge


@click.command("token")
@click.option("--rotate", is_flag=True,
              help="Replace the token; the gateway picks it up at once, clients re-read it.")
@click.option("--path", "show_path", is_flag=True, help="Print the token file's path instead.")
@edge
def token(rotate: bool, show_path: bool) -> None:
    """Print the token that every request to the gateway must carry.

    Scripts that talk HTTP send it as `Authorization: Bearer <token>`:

    \b
      curl --unix-socket "$XDG_RUNTIME_DIR/csp/gateway.sock" \\
           -H "Authorization: Bearer $(cspctl token)" http://localhost/v1/health
    """
    if show_path:
        click.echo(paths.token_path())
        return
    _refuse_agents()
    click.echo(rotate_token() if rotate else ensure_token())


def _refuse_agents() -> None:
    """The owner's token is the owner's: an agent's processes speak with their own
    credential (``$CSP_AGENT_TOKEN``), and must not take or rotate the owner's.  This
    stops a confused agent, not a determined one: the file is the user's and readable
    (see docs/agents.md on what identity protects)."""
    from csp_core.proctree import agent_of

    agent = agent_of(os.getpid())
    if agent is not None:
        raise Forbidden(f"cspctl token is the owner's, and this runs inside agent {agent!r}: "
                        "an agent's requests carry its own $CSP_AGENT_TOKEN, which cspctl "
                        "and cspctl mcp use by themselves")
