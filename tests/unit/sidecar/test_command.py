"""Where the CLI's own program sits in a command, past wrappers, options and interpreters."""

from __future__ import annotations

import shlex

import pytest

from csp_sidecar.command import env_after_wrappers, locate, locate_program, program_name


@pytest.mark.parametrize("word,name", [
    ("codex", "codex"),
    ("/usr/bin/codex", "codex"),
    ("./codex", "codex"),
    ("../bin/codex.js", "codex"),
    ("codex.mjs", "codex"),
    ("cli.cjs", "cli"),
    ("aider.py", "aider"),
    ("/usr/lib/node_modules/@anthropic-ai/claude-code/bin/claude.exe", "claude"),
    ("CLAUDE.EXE", "CLAUDE"),
    ("@openai/codex@0.171.0", "codex"),
    ("@openai/codex", "codex"),
    ("codex@latest", "codex"),
    ("/home/a@b/codex", "codex"),
    ("python3.12", "python3.12"),
    (".js", ".js"),
    ("", ""),
])
def test_program_name_makes_programs_comparable(word: str, name: str) -> None:
    assert program_name(word) == name


# command line -> index of the program (None: hidden), and its name
LOCATED: list[tuple[str, int | None, str]] = [
    ("codex", 0, "codex"),
    ("codex resume --last", 0, "codex"),
    ("/usr/bin/codex", 0, "codex"),
    ("./codex", 0, "codex"),
    ("env HOME=/x codex", 2, "codex"),
    ("/usr/bin/env HOME=/x A=b codex", 3, "codex"),
    ("env -i -u FOO -C /tmp A=1 codex --x", 7, "codex"),
    ("env -uFOO --chdir=/tmp -- codex", 4, "codex"),
    ("env --unset FOO codex", 3, "codex"),
    ("nice -n 5 codex", 3, "codex"),
    ("nice -5 codex", 2, "codex"),
    ("nice --adjustment=5 codex", 2, "codex"),
    ("nohup codex", 1, "codex"),
    ("stdbuf -oL -e 0 codex", 4, "codex"),
    ("stdbuf --output=L codex", 2, "codex"),
    ("timeout 10 codex", 2, "codex"),
    ("timeout --foreground -s KILL -k 5 10m codex", 7, "codex"),
    ("ionice -c 3 codex", 3, "codex"),
    ("ionice -c2 -n7 codex", 3, "codex"),
    ("taskset -c 0,1 codex", 3, "codex"),
    ("taskset 0x3 codex", 2, "codex"),
    ("setsid -w codex", 2, "codex"),
    ("chrt -f 10 codex", 3, "codex"),
    ("time -p codex", 2, "codex"),
    ("sudo -u bob codex", 3, "codex"),
    ("sudo -uleo codex", 2, "codex"),
    ("sudo -E --preserve-env=PATH -u bob -- codex", 6, "codex"),
    ("sudo -i codex", 2, "codex"),
    ("sudo -E env A=1 codex", 4, "codex"),
    ("doas -u bob codex", 3, "codex"),
    ("npx codex", 1, "codex"),
    ("npx -y @openai/codex@0.171.0", 2, "codex"),
    ("npx --yes --package @openai/codex codex", 4, "codex"),
    ("npx -p @openai/codex -- codex", 4, "codex"),
    ("pnpm dlx @openai/codex", 2, "codex"),
    ("pnpx @openai/codex", 1, "codex"),
    ("bunx --bun @openai/codex", 2, "codex"),
    ("npm exec -- codex", 3, "codex"),
    ("npm x -y codex", 3, "codex"),
    ("yarn dlx codex", 2, "codex"),
    ("pnpm install", 0, "pnpm"),
    ("node codex.js", 1, "codex"),
    ("node /usr/bin/codex", 1, "codex"),
    ("node --max-old-space-size=4096 --require ./hook.js /usr/bin/gemini", 4, "gemini"),
    ("node -r ./hook.js script.js", 3, "script"),  # a script named like a wrapper
    ("node /usr/bin/npx -y @openai/codex", 3, "codex"),
    ("node /usr/lib/node_modules/npm/bin/npx-cli.js codex", 2, "codex"),
    ("node -e 'x'", 0, "node"),
    ("node", 0, "node"),
    ("python3 -c 'input()'", 0, "python3"),
    ("python3 -i", 0, "python3"),
    ("python3 -", 0, "python3"),
    ("python3 -u -W ignore agent.py --x", 4, "agent"),
    ("python3 -m aider --model x", 2, "aider"),
    ("python3 -maider", 1, "aider"),
    ("python3.12 -I ssh.py", 2, "ssh"),  # the script is the program, whatever its name
    ("bun cli.ts", 1, "cli"),
    ("bun run cli.ts", 2, "cli"),
    ("bun x @openai/codex", 2, "codex"),
    ("bun install", 0, "bun"),
    ("deno run -A --config deno.json main.ts", 5, "main"),
    ("deno", 0, "deno"),
    ("deno repl", 0, "deno"),
    ("ruby -I lib agent.rb", 3, "agent"),
    ("perl -e 1", 0, "perl"),
    ("bash", 0, "bash"),
    ("bash --norc -i", 0, "bash"),
    ("bash --rcfile x -o vi", 0, "bash"),
    ("bash -s arg", 0, "bash"),
    ("bash run.sh --x", 1, "run.sh"),
    ("nice env A=b nohup node x.js", 5, "x"),
    ("env -S 'codex --x'", None, "env -S"),
    ("env --split-string='codex --x'", None, "env --split-string"),
    ("sh -c 'exec bash'", None, "sh -c"),
    ("bash -lc codex", None, "bash -c"),
    ("script -c codex", None, "script"),
    ("script", None, "script"),
    ("tmux new codex", None, "tmux"),
    ("screen codex", None, "screen"),
    ("ssh host codex", None, "ssh"),
    ("ssh host", None, "ssh"),
    ("mosh host", None, "mosh"),
    ("docker exec -it c sh", None, "docker"),
    ("podman run -it img codex", None, "podman"),
    ("kubectl exec -it pod -- codex", None, "kubectl"),
    ("sudo -i", None, "sudo -i"),
    ("sudo -s", None, "sudo -i/-s"),
    ("sudo -e /etc/hosts", None, "sudo -e"),
    ("doas -s", None, "doas -s"),
    ("su", None, "su"),
    ("su - bob -c codex", None, "su"),
    ("npx -c 'codex --x'", None, "npx -c"),
    ("pnpm dlx -c 'codex'", None, "pnpm dlx -c"),
    ("bun x -c 'codex'", None, "bun x -c"),
    ("bun exec 'codex'", None, "bun exec"),
    ("taskset -p 3 12", None, "taskset -p"),
    ("chrt -p 10 12", None, "chrt -p"),
    ("env", None, "no program follows env"),
    ("timeout 10", None, "no program follows timeout"),
    ("env A=1", None, "no program follows env"),
    ("sudo", None, "no program follows sudo"),
]


@pytest.mark.parametrize("line,index,name", LOCATED)
def test_the_program_is_found_past_its_wrappers(line: str, index: int | None,
                                                name: str) -> None:
    command = shlex.split(line)
    located = locate(command)
    assert located.index == index
    assert locate_program(command) == index
    if index is None:
        assert name in located.reason and located.name == ""
    else:
        assert located.name == name


def test_an_empty_command_has_no_program() -> None:
    assert locate([]).index is None
    assert "empty" in locate([]).reason


def test_the_walk_ends_on_any_input() -> None:
    # options and wrappers with nothing after them, in every order, never loop or raise
    words = ["env", "-u", "nice", "-n", "npx", "-p", "node", "-r", "--", "sudo", "timeout",
             "python3", "-m", "bun", "x", "deno", "run", "A=1", "-"]
    for i in range(len(words)):
        for j in range(len(words)):
            locate(words[i:] + words[:j])


@pytest.mark.parametrize(("command", "expected"), [
    (["codex"], {"A": "1"}),
    (["env", "CODEX_HOME=/x", "codex"], {"A": "1", "CODEX_HOME": "/x"}),
    (["env", "-i", "HOME=/h", "codex"], {"HOME": "/h"}),
    (["env", "-u", "A", "B=2", "codex", "C=3"], {"B": "2"}),
    (["nice", "-n", "5", "env", "--unset=A", "codex"], {}),
    (["env", "-uA", "--", "codex"], {}),
])
def test_the_environment_the_cli_gets_through_env(command: list[str],
                                                  expected: dict[str, str]) -> None:
    assert env_after_wrappers(command, {"A": "1"}) == expected
