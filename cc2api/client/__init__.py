"""A client of cc2api that never loses an event: ``Client`` blocks, ``AsyncClient`` awaits.

>>> from cc2api.client import Client
>>> with Client() as client, client.chat("say hi", cwd="/srv/repo") as run:
...     for event in run:
...         print(event.event, event.data)

Runs are started detached and followed; a dropped connection is reattached after
the last event seen, and leaving a run early cancels it.
"""

from .approvals import ApprovalHandler, Verdict
from .async_client import AsyncClient
from .config import ClientConfig, resolve
from .errors import ApiError, ClientError, ConnectionLost
from .events import Event
from .run import AsyncRun
from .sync_client import Client, Run

__all__ = [
    "ApiError",
    "ApprovalHandler",
    "AsyncClient",
    "AsyncRun",
    "Client",
    "ClientConfig",
    "ClientError",
    "ConnectionLost",
    "Event",
    "Run",
    "Verdict",
    "resolve",
]
