"""What the client raises: the server's refusals, and a server it cannot reach."""

from __future__ import annotations


class ClientError(Exception):
    """Every error the client raises."""


class ApiError(ClientError):
    """The server answered with a status that is not 2xx; ``code`` is stable for programs."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(f"{status} {code}: {detail}")
        self.status = status
        self.code = code
        self.detail = detail


class ConnectionLost(ClientError):
    """The server could not be reached, or reached again, within the client's patience."""
