"""The ``key`` parameter of the listings: the admin's filter by key, a key's own name."""

from __future__ import annotations

from .codes import ErrorCode
from .errors import NotFound
from .gateway import Gateway
from .principal import current_principal
from .query import Args

__all__ = ["key_filter"]


def key_filter(gateway: Gateway, args: Args) -> str | None:
    """Return the id of the key ``key=NAME`` names, or None when it is not given.

    The admin may name any key; a key only itself, and any other name answers as one
    that does not exist, so a key learns nothing of the others.

    Raises:
        NotFound: ``key_not_found``: no such key (for this caller).
    """
    name = args.get("key")
    if name is None:
        return None
    viewer = current_principal()
    key = gateway.keys.ring.named(name)
    if key is None or not viewer.owns(key.key_id):
        raise NotFound(f"key: no key named {name!r}", code=ErrorCode.KEY_NOT_FOUND)
    return key.key_id
