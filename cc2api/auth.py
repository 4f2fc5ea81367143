"""HTTP Basic authentication with constant-time credential checks."""

from __future__ import annotations

import base64
import binascii
import hmac
import math
from collections import deque
from collections.abc import Callable

from .errors import TooManyFailedLogins, Unauthorized

# Addresses remembered at most; beyond it the longest-known are forgotten, so a
# flood from many addresses cannot grow memory without bound.
MAX_TRACKED_ADDRESSES = 10_000


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
        if not header:
            raise Unauthorized("authentication required")
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic" or not encoded.strip():
            raise Unauthorized("use HTTP Basic authentication")
        try:
            decoded = base64.b64decode(encoded.strip(), validate=True)
        except (binascii.Error, ValueError):
            raise Unauthorized("malformed Basic credentials") from None
        user, colon, password = decoded.partition(b":")
        if not colon:
            raise Unauthorized("malformed Basic credentials")
        # Both comparisons always run, so timing says nothing about which part was wrong.
        user_ok = hmac.compare_digest(user, self._user)
        password_ok = hmac.compare_digest(password, self._password)
        if not (user_ok and password_ok):
            raise Unauthorized("invalid credentials")


class LoginThrottle:
    """Locks out a client address after repeated failed logins in a short window.

    ``max_failures`` failures within ``window`` seconds lock the address out for
    ``lockout`` seconds, correct credentials or not; 0 failures turns it off.
    A success clears the address's count. ``clock`` returns seconds (monotonic).
    """

    def __init__(
        self, max_failures: int, window: float, lockout: float, clock: Callable[[], float]
    ) -> None:
        self._max_failures = max_failures
        self._window = window
        self._lockout = lockout
        self._clock = clock
        self._failures: dict[str, deque[float]] = {}
        self._locked_until: dict[str, float] = {}

    def check(self, address: str) -> None:
        """Return when ``address`` may try to log in.

        Raises:
            TooManyFailedLogins: it is locked out; says for how long.
        """
        until = self._locked_until.get(address)
        if until is None:
            return
        left = until - self._clock()
        if left <= 0:
            del self._locked_until[address]
            return
        raise TooManyFailedLogins(
            f"too many failed logins from {address}; try again in {math.ceil(left)} s",
            retry_after=math.ceil(left),
        )

    def failed(self, address: str) -> None:
        """Count a failed login; locks the address out when it has failed too often."""
        if self._max_failures == 0:
            return
        now = self._clock()
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
            while len(table) > MAX_TRACKED_ADDRESSES:
                del table[next(iter(table))]

    def succeeded(self, address: str) -> None:
        """Forget the address's failures."""
        self._failures.pop(address, None)
