"""The edge where errors become exit codes, and the bridge from click to asyncio."""

from __future__ import annotations

import asyncio
import functools
import sys
from collections.abc import Awaitable, Callable
from typing import Any, ParamSpec, TypeVar

import click
from csp_core.endpoint import gateway_address
from csp_core.errors import CspError, Unauthorized
from csp_core.paths import token_path

P = ParamSpec("P")
T = TypeVar("T")

EXIT_INTERRUPTED = 130


def fail(message: str, code: int = 1) -> None:
    click.echo(f"cspctl: {message}", err=True)
    sys.exit(code)


def explain(exc: CspError) -> str:
    """The error's message, plus what a bare "wrong token" leaves the reader to guess."""
    if isinstance(exc, Unauthorized) and exc.message == "wrong token":
        return (f"wrong token: the gateway at {gateway_address()} does not accept the one in "
                f"{token_path()} (a gateway of another session or user?)")
    return exc.message


def run(coro: Awaitable[T]) -> T:
    """Run a coroutine; a :class:`CspError` becomes a message on stderr and its exit code."""
    try:
        return asyncio.run(coro)  # type: ignore[arg-type]
    except CspError as exc:
        fail(explain(exc), exc.exit_code)
    except KeyboardInterrupt:
        sys.exit(EXIT_INTERRUPTED)
    raise AssertionError("unreachable")


def edge(fn: Callable[P, T]) -> Callable[P, T]:
    """Catch csp errors raised by synchronous command bodies."""
    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return fn(*args, **kwargs)
        except CspError as exc:
            fail(explain(exc), exc.exit_code)
        raise AssertionError("unreachable")
    return wrapper


def coro_command(fn: Callable[P, Awaitable[Any]]) -> Callable[P, Any]:
    """Let a click command be written as ``async def``."""
    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
        return run(fn(*args, **kwargs))
    return wrapper
