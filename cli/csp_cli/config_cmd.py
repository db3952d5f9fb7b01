"""``cspctl config path|show`` and ``cspctl agents add|remove|presets``.

``agents`` itself is a group defined in agents_cmd.py; the subcommands here
are attached to it in main.py so the two modules stay independent.
"""

from __future__ import annotations

import dataclasses
import shlex
import shutil
from pathlib import Path

import click
import tomli_w

from csp_core import paths
from csp_core.config import gateway_config, load_document
from csp_core.errors import BadRequest
from csp_core.protocol import check_name

from . import agentsconf, presets
from .render import print_json
from .runner import edge


@click.group("config")
def config() -> None:
    """Where csp's configuration lives and what it says."""


@config.command("path")
def config_path() -> None:
    """Print the path of config.toml (it need not exist yet)."""
    click.echo(paths.config_path())


@config.command("show")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@edge
def config_show(as_json: bool) -> None:
    """Print the configuration in effect, defaults filled in (and check it).

    \b
      cspctl config show
      cspctl config show --json | jq .config.gateway.max_message_bytes

    Exits 2, naming the file, line and key, when config.toml is not valid.
    """
    path = paths.config_path()
    conf = agentsconf.load(path)
    doc = load_document(path)
    doc["gateway"] = dataclasses.asdict(gateway_config(doc, path))
    doc["layout"] = dataclasses.asdict(conf.layout)
    doc["agents"] = [a.to_toml() for a in conf.agents]
    if not doc["agents"]:
        del doc["agents"]
    if as_json:
        print_json({"path": str(path), "exists": path.exists(), "config": doc})
        return
    click.echo(f"# {path}" + ("" if path.exists() else " (does not exist: defaults)"))
    click.echo(tomli_w.dumps(doc).rstrip("\n"))


@click.command("add", context_settings={"ignore_unknown_options": True})
@click.argument("name")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@click.option("--profile", help="Sidecar profile (default: from the preset, if any).")
@click.option("--cwd", help="Directory the agent starts in.")
@click.option("--room", help="Room the agent joins (default: the gateway's default room).")
@click.option("--env", "env", multiple=True, metavar="KEY=VALUE",
              help="Environment variable for the agent (repeatable).")
@click.option("--skip-permissions", is_flag=True,
              help="Add the preset's flag that disables the agent's own permission prompts "
                   "(e.g. claude --dangerously-skip-permissions). Off unless you ask.")
@click.option("--replace", is_flag=True, help="Overwrite an agent of the same name.")
@edge
def agents_add(name: str, command: tuple[str, ...], profile: str | None, cwd: str | None,
               room: str | None, env: tuple[str, ...], skip_permissions: bool,
               replace: bool) -> None:
    """Add agent NAME to config.toml; it runs COMMAND in a sidecar.

    \b
      cspctl agents add claude -- claude
      cspctl agents add reviewer --cwd ~/src/app -- codex
      cspctl agents add gemini              (a known CLI: its usual command)

    Known CLIs: claude, codex, gemini, aider (see `cspctl agents presets`).
    """
    argv = list(command)
    if argv and argv[0] == "--":
        argv = argv[1:]
    preset = presets.preset_for_command(argv) if argv else presets.PRESETS.get(name)
    if not argv:
        if preset is None:
            raise BadRequest(f"give the command to run: cspctl agents add {name} -- COMMAND")
        argv = list(preset.command)
    if skip_permissions:
        if preset is None:
            raise BadRequest("--skip-permissions only knows the flags of claude, codex, "
                             "gemini and aider; put the flag in the command yourself")
        argv += [f for f in preset.skip_permissions if f not in argv]
    spec = agentsconf.AgentSpec(name=name, command=argv,
                                profile=profile or (preset.profile if preset else None),
                                cwd=cwd, env=_parse_env(env), room=room)
    check_name(name)
    if room:
        check_name(room, "room name")
    path = agentsconf.add_agent(spec, replace=replace)
    click.echo(f"{'replaced' if replace else 'added'} {name}: {shlex.join(argv)}  ({path})")
    if shutil.which(argv[0]) is None and not (cwd and (Path(cwd).expanduser() / argv[0])
                                              .is_file()):
        hint = f" (install: {preset.install_hint})" if preset else ""
        click.echo(f"note: {argv[0]!r} is not on PATH yet{hint}", err=True)
    if preset and not skip_permissions and preset.skip_permissions:
        click.echo(f"note: {preset.title} will ask for permission as usual; to let it act "
                   f"without asking, re-add with --replace --skip-permissions "
                   f"({' '.join(preset.skip_permissions)})", err=True)


def _parse_env(pairs: tuple[str, ...]) -> dict[str, str]:
    env: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise BadRequest(f"--env wants KEY=VALUE, got {pair!r}")
        env[key] = value
    return env


@click.command("remove")
@click.argument("name")
@edge
def agents_remove(name: str) -> None:
    """Remove agent NAME from config.toml (a running pane keeps running)."""
    path = agentsconf.remove_agent(name)
    click.echo(f"removed {name} ({path})")


@click.command("presets")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def agents_presets(as_json: bool) -> None:
    """The agent CLIs csp knows, whether they are installed, and their risky flag."""
    if as_json:
        print_json([{"name": p.name, "title": p.title, "command": list(p.command),
                     "profile": p.profile, "skip_permissions": list(p.skip_permissions),
                     "installed": shutil.which(p.executable), "install_hint": p.install_hint}
                    for p in presets.PRESETS.values()])
        return
    for p in presets.PRESETS.values():
        found = shutil.which(p.executable)
        where = f"installed: {found}" if found else f"not found: {p.install_hint}"
        click.echo(f"{p.name:<8}{p.title:<13}{shlex.join(p.command):<10}"
                   f"skip prompts: {' '.join(p.skip_permissions):<45}{where}")
