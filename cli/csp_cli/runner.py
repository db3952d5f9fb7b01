"""The edge where errors become exit codes, and the bridge from click to asyncio.

Light to import (no click, no asyncio, no typing at run time): the quick
``cspctl send`` (:mod:`csp_cli.entry`) reports its errors here too.  asyncio is
imported only by a command that runs a coroutine: most one-shot commands make
one blocking request and would pay its import for nothing.
"""

from __future__ import annotations

import functools
import sys

from csp_core.endpoint import gateway_address
from csp_core.errors import CspError, Unauthorized
from csp_core.paths import token_path

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable
    from typing import Any, NoReturn, ParamSpec, TypeVar

    P = ParamSpec("P")
    T = TypeVar("T")

EXIT_INTERRUPTED = 130


def fail(message: str, code: int = 1) -> NoReturn:
    sys.stderr.write(f"cspctl: {message}\n")
    sys.exit(code)


def explain(exc: CspError) -> str:
    """The error's message, plus what a bare "wrong token" leaves the reader to guess."""
    if isinstance(exc, Unauthorized) and exc.message == "wrong token":
        return (f"wrong token: the gateway at {gateway_address()} does not accept the one in "
                f"{token_path()} (a gateway of another session or user?)")
    return exc.message


def run(coro: Awaitable[T]) -> T:
    """Run a coroutine; a :class:`CspError` becomes a message on stderr and its exit code."""
    import asyncio

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
