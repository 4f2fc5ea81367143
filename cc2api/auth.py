"""HTTP Basic authentication with constant-time credential checks."""

from __future__ import annotations

import base64
import binascii
import hmac
import logging
import math
from collections import deque
from collections.abc import Callable
from typing import Any

from .errors import TooManyFailedLogins, Unauthorized

# Addresses remembered at most; beyond it the longest-known are forgotten, so a
# flood from many addresses cannot grow memory without bound.
MAX_TRACKED_ADDRESSES = 10_000

log = logging.getLogger(__name__)


class BasicAuth:
    """Checks ``Authorization: Basic`` headers against one user and password."""

    def __init__(self, user: str, password: str) -> None:
        self._user = user.encode()
        self._password = password.encode()

    def check(self, header: str | None) -> None:
        """Return when ``header`` carries the right credentials.

        Raises:
            Unauthorized: the header is missing, malformed or wrong. The message
                never repeats what was sent.
        """
        user, password = basic_credentials(header)
        if not self.matches(user, password):
            raise Unauthorized("invalid credentials")

    def matches(self, user: bytes, password: bytes) -> bool:
        """Return whether ``user`` and ``password`` are this one's, in constant time."""
        # Both comparisons always run, so timing says nothing about which part was wrong.
        user_ok = hmac.compare_digest(user, self._user)
        password_ok = hmac.compare_digest(password, self._password)
        return user_ok and password_ok


def basic_credentials(header: str | None) -> tuple[bytes, bytes]:
    """Return the user and password of an ``Authorization: Basic`` header.

    Raises:
        Unauthorized: the header is missing, not Basic, or malformed.
    """
    if not header:
        raise Unauthorized("authentication required")
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic" or not encoded.strip():
        raise Unauthorized("use HTTP Basic authentication or a Bearer token")
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise Unauthorized("malformed Basic credentials") from None
    user, colon, password = decoded.partition(b":")
    if not colon:
        raise Unauthorized("malformed Basic credentials")
    return user, password


class LoginThrottle:
    """Slows password guessing down, from one address and from all addresses together.

    Per address: ``max_failures`` failures within ``window`` seconds lock the address
    out for ``lockout`` seconds, correct credentials or not. A success clears the
    address's count.

    Globally: ``max_failures_global`` failures within ``window`` from any addresses
    lock out, for ``lockout`` seconds, every address that has not logged in
    successfully in the last ``lockout`` seconds. One client can hold many addresses
    (all of 127.0.0.0/8 on the gateway's host, an IPv6 /64 elsewhere), each of them
    under the per-address limit; the global budget stops it, while the clients that
    were working keep working. An address that never logged in learns nothing during
    a global lockout: it is refused before its credentials are checked.

    0 failures turns either lockout off. ``clock`` returns seconds (monotonic).
    Memory is bounded: at most ``MAX_TRACKED_ADDRESSES`` addresses per table, and
    ``max_failures_global`` moments.
    """

    def __init__(
        self,
        max_failures: int,
        window: float,
        lockout: float,
        clock: Callable[[], float],
        *,
        max_failures_global: int = 0,
    ) -> None:
        self._max_failures = max_failures
        self._max_failures_global = max_failures_global
        self._window = window
        self._lockout = lockout
        self._clock = clock
        self._failures: dict[str, deque[float]] = {}
        self._locked_until: dict[str, float] = {}
        self._global_failures: deque[float] = deque()
        self._global_locked_until = -math.inf
        self._last_success: dict[str, float] = {}  # oldest first

    def check(self, address: str) -> None:
        """Return when ``address`` may try to log in.

        Raises:
            TooManyFailedLogins: it is locked out, or every address without a recent
                success is; says for how long.
        """
        now = self._clock()
        until = self._locked_until.get(address)
        if until is not None:
            if until > now:
                left = math.ceil(until - now)
                raise TooManyFailedLogins(
                    f"too many failed logins from {address}; try again in {left} s",
                    retry_after=left,
                )
            del self._locked_until[address]
        if self._global_locked_until > now and not self._succeeded_lately(address, now):
            left = math.ceil(self._global_locked_until - now)
            raise TooManyFailedLogins(
                f"too many failed logins on this server; try again in {left} s",
                retry_after=left,
            )

    def failed(self, address: str) -> None:
        """Count a failed login; locks the address, or all new ones, out when due."""
        now = self._clock()
        if self._max_failures_global:
            moments = self._global_failures
            moments.append(now)
            while moments[0] <= now - self._window:
                moments.popleft()
            if len(moments) >= self._max_failures_global:
                moments.clear()
                self._global_locked_until = now + self._lockout
                log.warning(
                    "%d failed logins within %g s from all addresses: only addresses that "
                    "logged in during the last %g s may try for %g s",
                    self._max_failures_global,
                    self._window,
                    self._lockout,
                    self._lockout,
                )
        if self._max_failures == 0:
            return
        times = self._failures.pop(address, None) or deque()
        self._failures[address] = times  # re-inserted: the dict stays oldest-first
        times.append(now)
        while times and times[0] <= now - self._window:
            times.popleft()
        if len(times) >= self._max_failures:
            del self._failures[address]
            self._locked_until.pop(address, None)
            self._locked_until[address] = now + self._lockout
        for table in (self._failures, self._locked_until):
            _forget_oldest(table)

    def succeeded(self, address: str, *, clears: bool = True) -> None:
        """Let the address log in during a global lockout; forget its failures if ``clears``.

        An API key's success does not clear them: else a key's holder could guess the
        admin's password between requests made with the key, never locked out.
        """
        now = self._clock()
        if clears:
            self._failures.pop(address, None)
        successes = self._last_success
        successes.pop(address, None)
        successes[address] = now  # re-inserted: the dict stays oldest-first
        # Only successes within the last lockout period matter: older ones go.
        while (oldest := next(iter(successes))) != address and (
            successes[oldest] <= now - self._lockout
        ):
            del successes[oldest]
        _forget_oldest(successes)

    def _succeeded_lately(self, address: str, now: float) -> bool:
        last = self._last_success.get(address)
        return last is not None and last > now - self._lockout


def _forget_oldest(table: dict[str, Any]) -> None:
    while len(table) > MAX_TRACKED_ADDRESSES:
        del table[next(iter(table))]
