"""How the bus tells Redis being away (retry) from Redis refusing us (do not retry).

Theory of operation: connection errors and timeouts are transient: the bus and its consumers
back off and retry. Redis refusing the URL's credentials (a wrong password, a disabled ACL user)
or the permissions the bus needs (NOPERM: a command or key the ACL user may not use) will not
fix itself: `auth_failure` turns those into BusAuthError, whose message names the server and
the user but never the password (`redact`).
"""

from __future__ import annotations

from redis.exceptions import (
    AuthenticationError,
    AuthorizationError,
    NoPermissionError,
    ResponseError,
)


class BusError(RuntimeError):
    """The bus cannot do what was asked."""


class BusAuthError(BusError):
    """Redis refused the credentials or the permissions of the URL's user (not retried)."""


class BusUnavailable(BusError):
    """Redis did not answer within the time allowed."""


class EnvelopeTooBig(BusError, ValueError):
    """An envelope over max_envelope_bytes: not sent (a periodic report says so in the log and
    tries again next period)."""


def redact(url: str) -> str:
    """`url` without its password."""
    scheme, separator, rest = url.partition("://")
    credentials, at, host = rest.rpartition("@")
    if not at or ":" not in credentials:
        return url
    user = credentials.split(":", 1)[0]
    return f"{scheme}{separator}{user}:***@{host}"


def auth_failure(error: Exception, url: str) -> BusAuthError | None:
    """A BusAuthError if `error` is Redis refusing who we are or what we may touch."""
    credentials, at, _ = url.partition("://")[2].rpartition("@")
    user = (credentials.split(":", 1)[0] if at else "") or "default"
    where = f"Redis at {redact(url)} (user {user!r})"
    if isinstance(error, (AuthenticationError, AuthorizationError)) or (
        isinstance(error, ResponseError) and str(error).startswith(("WRONGPASS", "NOAUTH"))
    ):
        return BusAuthError(f"{where} refused the credentials: {error}")
    if isinstance(error, NoPermissionError) or (
        isinstance(error, ResponseError) and str(error).startswith("NOPERM")
    ):
        return BusAuthError(f"{where} denied a command or key the bus needs: {error}")
    return None
