"""HTTP Basic authentication with constant-time credential checks."""

from __future__ import annotations

import base64
import binascii
import hmac

from .errors import Unauthorized

REALM_HEADER = {"WWW-Authenticate": 'Basic realm="cc2api"'}


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
