"""A TCP proxy on 127.0.0.1 whose connections a test can cut mid-stream, as a network drop does."""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass, field

import trio


@dataclass
class CuttingProxy:
    """Forwards 127.0.0.1:<port> to ``target_port``; cuts connections when told, or by itself.

    ``cut_after_bytes``: each of the first ``cuts`` connections is cut (reset, both ways)
    once it has carried that many bytes from the server to the client. ``cut()`` cuts
    every live connection at once. Serve it with ``await nursery.start(proxy.serve)``.
    """

    target_port: int
    cut_after_bytes: int | None = None
    cuts: int = 0
    port: int = 0
    accepted: int = 0
    cut_count: int = 0
    hold_answers: float = 0.0  # seconds each connection's first bytes from the server wait
    refuse: bool = False  # reset every new connection at once, as a host that is down would
    _live: set[trio.CancelScope] = field(default_factory=set)
    _budgets_given: int = 0

    @property
    def url(self) -> str:
        """The proxy's base URL."""
        return f"http://127.0.0.1:{self.port}"

    def cut(self) -> None:
        """Reset every connection carried now; new ones are carried as before."""
        for scope in list(self._live):
            self.cut_count += 1
            scope.cancel()

    async def serve(self, *, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
        """Accept and forward until cancelled; ``task_status`` gets the proxy's URL."""
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        task_status.started(self.url)
        await trio.serve_listeners(self._carry, listeners)

    async def _carry(self, client: trio.SocketStream) -> None:
        self.accepted += 1
        if self.refuse:
            _reset(client)
            await client.aclose()
            return
        budget = None
        if self.cut_after_bytes is not None and self._budgets_given < self.cuts:
            self._budgets_given += 1
            budget = self.cut_after_bytes
        try:
            server = await _connect(self.target_port)
        except OSError:
            await client.aclose()
            return
        try:
            with trio.CancelScope() as scope:
                self._live.add(scope)
                try:
                    async with trio.open_nursery() as nursery:
                        nursery.start_soon(self._pump, client, server, None, scope)
                        nursery.start_soon(self._pump_down, server, client, budget, scope)
                finally:
                    self._live.discard(scope)
        finally:
            # Shielded: aclose checkpoints after closing, so a cancelled proxy would leave
            # the second stream open; closing a socket stream does not block.
            with trio.CancelScope(shield=True):
                for stream in (client, server):
                    _reset(stream)
                    await stream.aclose()

    async def _pump_down(
        self,
        source: trio.SocketStream,
        sink: trio.SocketStream,
        budget: int | None,
        scope: trio.CancelScope,
    ) -> None:
        # A slow network or a busy gateway: the answer waits in the kernel meanwhile.
        await trio.sleep(self.hold_answers)
        if await self._pump(source, sink, budget, scope):
            self.cut_count += 1

    @staticmethod
    async def _pump(
        source: trio.SocketStream,
        sink: trio.SocketStream,
        budget: int | None,
        scope: trio.CancelScope,
    ) -> bool:
        """Forward until one side closes, or ``budget`` is spent (then return True)."""
        try:
            while data := await source.receive_some(16384):
                if budget is not None:
                    data = data[:budget]
                    budget -= len(data)
                await sink.send_all(data)
                if budget == 0:
                    scope.cancel()
                    return True
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        scope.cancel()  # one side closed: so does the other, as a real hop would
        return False


async def _connect(port: int) -> trio.SocketStream:
    """Connect to 127.0.0.1:``port``; the socket is closed if the connect fails or is cancelled.

    Not trio.open_tcp_stream: a cancel that lands just after its connect succeeded leaves
    the connected socket unclosed (a ResourceWarning, an error under the tests' filters).
    """
    sock = trio.socket.socket()
    try:
        await sock.connect(("127.0.0.1", port))
    except BaseException:
        sock.close()
        raise
    return trio.SocketStream(sock)


def _reset(stream: trio.SocketStream) -> None:
    # SO_LINGER 0 makes close send RST: the peer sees a dropped connection, not an end.
    stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
