"""Who a request acts for: the admin (the .env credential) or one API key."""

from __future__ import annotations

from dataclasses import dataclass

from quart import g

from .errors import Unauthorized
from .keys import ApiKey

__all__ = ["ADMIN", "ADMIN_NAME", "Principal", "current_principal"]

ADMIN_NAME = "admin"


@dataclass(frozen=True)
class Principal:
    """The admin (``key`` None) or a key's holder."""

    key: ApiKey | None = None

    @property
    def is_admin(self) -> bool:
        """Return whether this is the admin, who sees and may do everything."""
        return self.key is None

    @property
    def key_id(self) -> str | None:
        """Return the key's id; None for the admin."""
        return None if self.key is None else self.key.key_id

    @property
    def name(self) -> str:
        """Return the key's name, or ``admin``: the label metrics, logs and usage show."""
        return ADMIN_NAME if self.key is None else self.key.name

    def owns(self, key_id: str | None) -> bool:
        """Return whether this principal may see a run started by ``key_id`` (None: the admin)."""
        return self.key is None or key_id == self.key.key_id


ADMIN = Principal()


def current_principal() -> Principal:
    """Return who the current request acts for, as authentication set it.

    Raises:
        Unauthorized: nothing authenticated the request (a public path reads no runs).
    """
    principal = g.get("principal")
    if not isinstance(principal, Principal):
        raise Unauthorized("authentication required")
    return principal
