"""``cspctl token``: show or rotate the gateway's token."""

from __future__ import annotations

import click
from csp_core import paths
from csp_core.auth import ensure_token, rotate_token

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
    click.echo(rotate_token() if rotate else ensure_token())
