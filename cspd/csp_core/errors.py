"""One error hierarchy for all of csp.

Each error carries the HTTP status the gateway answers with, a stable ``code``
that travels in the JSON error body, and the exit code ``cspctl`` uses.  The
client turns an error body back into the same class, so a script sees the same
meaning on both sides of the socket.
"""

from __future__ import annotations

import json

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (see csp_core)
if TYPE_CHECKING:
    from typing import Any, ClassVar


class CspError(Exception):
    """Base of every error csp raises on purpose."""

    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal"
    exit_code: ClassVar[int] = 1

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"error": self.code, "message": self.message}
        body.update(self.details)
        return body


class BadRequest(CspError):
    status = 400
    code = "bad_request"
    exit_code = 2


class Unauthorized(CspError):
    status = 401
    code = "unauthorized"
    exit_code = 4


class Forbidden(CspError):
    status = 403
    code = "forbidden"
    exit_code = 4


class NotFound(CspError):
    status = 404
    code = "not_found"
    exit_code = 5


class UnknownRecipient(NotFound):
    code = "unknown_recipient"


class Conflict(CspError):
    status = 409
    code = "conflict"
    exit_code = 6


class PayloadTooLarge(CspError):
    status = 413
    code = "too_large"
    exit_code = 2


class RateLimited(CspError):
    status = 429
    code = "rate_limited"
    exit_code = 7


class HeadersTooLarge(BadRequest):
    """A request line or header past the parser's limit (8 KiB each, 128 headers)."""

    status = 431
    code = "headers_too_large"


class RequestTimeout(CspError):
    """A request's head or body did not arrive in time: the connection is closed so that
    half-sent requests cannot hold the gateway's file descriptors."""

    status = 408
    code = "request_timeout"
    exit_code = 1


class Busy(CspError):
    """The socket's connection budget is spent (another local user flooding the TCP
    port, or a runaway script): the connection is refused at once, retry shortly.
    Same exit code as a rate limit: both mean "back off and try again"."""

    status = 503
    code = "busy"
    exit_code = 7


class GatewayUnavailable(CspError):
    """The gateway cannot be reached at all (not running, socket missing)."""

    status = 503
    code = "unavailable"
    exit_code = 3

    @classmethod
    def not_running(cls, address: str, why: str) -> GatewayUnavailable:
        return cls(f"the gateway is not running at {address} ({why}); start it with "
                   "`systemctl --user start csp-gateway.socket` or run `cspd` in a terminal")

    @classmethod
    def no_answer(cls, address: str, timeout: float) -> GatewayUnavailable:
        return cls(f"the gateway at {address} did not answer in {timeout:.0f}s")


class ConfigError(CspError):
    code = "config"
    exit_code = 2


class StorageUnavailable(CspError):
    """The database cannot be written (disk full, read-only filesystem, I/O error).

    Nothing was stored, so nothing may be acknowledged: the poster gets a 503 with
    the usual JSON error body and can send again later; reads keep working.
    """

    status = 503
    code = "storage_unavailable"
    exit_code = 1


_BY_CODE: dict[str, type[CspError]] = {}


def _register(cls: type[CspError]) -> None:
    _BY_CODE[cls.code] = cls
    for sub in cls.__subclasses__():
        _register(sub)


_register(CspError)


def from_json(status: int, body: Any) -> CspError:
    """Rebuild the error the gateway described in an error response."""
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        cls = _BY_CODE.get(body["error"], CspError)
        message = str(body.get("message", body["error"]))
        details = {k: v for k, v in body.items() if k not in ("error", "message")}
        return cls(message, **details)
    return CspError(f"gateway answered HTTP {status}")


def decode_response(status: int, raw: str | bytes) -> Any:
    """The JSON body of a gateway answer; an error status raises the error it describes."""
    try:
        body = json.loads(raw) if raw else None
    except ValueError:
        body = None
    if status >= 400:
        raise from_json(status, body)
    return body
