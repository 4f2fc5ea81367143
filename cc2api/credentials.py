"""Who sent a request: the admin's Basic credential, or an API key (Bearer, or Basic).

A key is sent as ``Authorization: Bearer <token>``, or as Basic auth with the key's
name as the user and its token as the password, so that clients that only know
Basic auth (claudecode2api's) work with a key unchanged. Every comparison is
constant-time; a Basic credential is checked against the admin's and, when its
password looks like a token, against the keys too, both always.
"""

from __future__ import annotations

from .auth import BasicAuth, basic_credentials
from .errors import Unauthorized
from .keys import TOKEN_PREFIX, KeyRing
from .principal import ADMIN, Principal

__all__ = ["Credentials"]

_PREFIX = TOKEN_PREFIX.encode()


class Credentials:
    """Resolves an ``Authorization`` header to a :class:`Principal`."""

    def __init__(self, admin: BasicAuth, ring: KeyRing) -> None:
        self._admin = admin
        self._ring = ring

    def principal(self, header: str | None) -> Principal:
        """Return who ``header`` authenticates.

        Raises:
            Unauthorized: it is missing, malformed, wrong, or names a revoked key. The
                message never repeats what was sent.
        """
        if header and header[:7].lower() == "bearer ":
            token = header[7:].strip()
            key = self._ring.match(token) if token.startswith(TOKEN_PREFIX) else None
            if key is None:
                raise Unauthorized("invalid credentials")
            return Principal(key)
        user, password = basic_credentials(header)
        admin = self._admin.matches(user, password)
        key = None
        if password.startswith(_PREFIX):
            key = self._ring.match(
                password.decode("utf-8", "replace"), user.decode("utf-8", "replace")
            )
        if admin:
            return ADMIN
        if key is None:
            raise Unauthorized("invalid credentials")
        return Principal(key)
