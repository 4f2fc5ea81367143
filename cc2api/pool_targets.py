"""How many CLIs each profile gets of the pool: pure arithmetic, apart for its tests."""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import TypeVar

__all__ = ["targets"]

K = TypeVar("K", bound=Hashable)


def targets(size: int, declared: Sequence[tuple[K, int]], recent: Sequence[K]) -> dict[K, int]:
    """Return how many waiting CLIs each profile should have, within ``size`` in all.

    Declared profiles get their own sizes first, in order, as far as ``size`` goes.
    What is left is split evenly among the ``recent`` ones (most recent first), the
    most recent taking the remainder; those past the room get none.
    """
    wanted: dict[K, int] = {}
    left = size
    for ident, count in declared:
        wanted[ident] = min(count, left)
        left -= wanted[ident]
    learned = [ident for ident in recent if ident not in wanted]
    if learned and left > 0:
        share, extra = divmod(left, len(learned))
        for place, ident in enumerate(learned):
            count = share + (1 if place < extra else 0)
            if count:
                wanted[ident] = count
    return wanted
