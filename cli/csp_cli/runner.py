"""The edge where errors become exit codes, and the bridge from click to asyncio."""

from __future__ import annotations

import asyncio
import functools
import sys
from collections.abc import Awaitable, Callable
from typing import Any, ParamSpec, TypeVar

import click

from cspd.errors import CspError

P = ParamSpec("P")
T = TypeVar("T")

EXIT_INTERRUPTED = 130


def fail(message: str, code: int = 1) -> None:
    click.echo(f"cspctl: {message}", err=True)
    sys.exit(code)


def run(coro: Awaitable[T]) -> T:
    """Run a coroutine; a :class:`CspError` becomes a message on stderr and its exit code."""
    try:
        return asyncio.run(coro)  # type: ignore[arg-type]
    except CspError as exc:
        fail(exc.message, exc.exit_code)
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
            fail(exc.message, exc.exit_code)
        raise AssertionError("unreachable")
    return wrapper


def coro_command(fn: Callable[P, Awaitable[Any]]) -> Callable[P, Any]:
    """Let a click command be written as ``async def``."""
    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
        return run(fn(*args, **kwargs))
    return wrapper
