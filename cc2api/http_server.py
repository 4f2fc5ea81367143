"""Hypercorn's trio worker, with cc2api's guard on connections.

``hypercorn.trio.serve`` keeps every connection until its keep-alive timeout, accepts
without limit and lets trio's accept loop log a traceback on each EMFILE: a few
thousand silent connections used every descriptor. This is its ``worker_serve`` (plain
HTTP only, as cc2api is served) with these changes:

- A connection's slot is taken from a ``ConnectionTable`` before it is accepted, so
  the server stops accepting at the cap instead of running out of descriptors, and
  closes its longest idle connection when another one waits (see connections.py).
- The idle timer hypercorn starts on connect, and stops when a complete request head
  is in, lasts HEADER_TIMEOUT_SECONDS until the first request; after a response it
  lasts the keep-alive timeout, as before. Hypercorn's ``read_timeout`` would do
  neither: it ends any read, an SSE stream's quiet request side included.
- A send that the client takes nothing of for ``send_timeout`` closes the connection;
  hypercorn's shielded write would otherwise wait for ever on a client that never reads.
- A connection whose client has gone is closed at once (hypercorn kept one that had
  sent no whole request until its idle timer fired).
- accept(2) failing for want of descriptors is counted and logged at most once per
  period, never as a traceback.

It reaches into hypercorn's trio worker (``TCPServer._idle_timeout``, ``Lifespan``,
``WorkerContext``), which is why hypercorn is pinned to one version.
"""

from __future__ import annotations

import errno
from collections.abc import Awaitable, Callable
from typing import NoReturn, cast

import trio
from hypercorn.config import Config
from hypercorn.events import Closed, Event, RawData, Updated
from hypercorn.trio.lifespan import Lifespan
from hypercorn.trio.statsd import StatsdLogger
from hypercorn.trio.tcp_server import TCPServer
from hypercorn.trio.worker_context import WorkerContext
from hypercorn.typing import AppWrapper, ConnectionState, LifespanState
from hypercorn.utils import ShutdownError, raise_shutdown, repr_socket_addr

from .connections import Connection, ConnectionTable, Pressure

# accept(2) errors that say the process or the machine is out of something, as trio's
# serve_listeners has them; anything else is a bug and stops the server.
ACCEPT_CAPACITY_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS})
ACCEPT_RETRY_SECONDS = 0.1


class GuardedTCPServer(TCPServer):
    """One connection, served by hypercorn, that the table may close while it is idle."""

    def __init__(
        self,
        app: AppWrapper,
        config: Config,
        context: WorkerContext,
        state: LifespanState,
        stream: trio.SocketStream,
        *,
        table: ConnectionTable,
        pressure: Pressure,
        connection: Connection,
        header_timeout: float,
        send_timeout: float,
    ) -> None:
        # Hypercorn types the stream as TLS and handles plain ones by AttributeError.
        super().__init__(
            app, config, context, state, cast(trio.SSLStream[trio.SocketStream], stream)
        )
        self._table = table
        self._pressure = pressure
        self._connection = connection
        self._header_timeout = header_timeout
        self._send_timeout = send_timeout
        self._socket = stream.socket

    async def protocol_send(self, event: Event) -> None:
        """Send data with a deadline; note when a request head first comes in."""
        if isinstance(event, RawData):
            await self._send(event.data)
            return
        if isinstance(event, Updated) and not event.idle:
            self._connection.requested = True
        if isinstance(event, Updated) and event.idle:
            # Sent from the request's own task as it ends; quart-trio cancels that task
            # when hypercorn tells it of the disconnect that recycling the connection
            # entails, which would cancel the idle timer's start with it: the connection
            # would then be neither idle (no timeout, not evictable) nor busy.
            with trio.CancelScope(shield=True):
                await super().protocol_send(event)
            return
        await super().protocol_send(event)

    async def _send(self, data: bytes) -> None:
        """Send as hypercorn does, but close the connection once the client takes nothing.

        The write is shielded, as hypercorn's is: a request cancelled mid-write must not
        leave half a frame on the wire. So nothing else ends it: a client that requested
        a large answer and never read it held its connection for good, beyond Quart's
        response timeout, and a connection with a request in flight is never evicted.
        Each send(2) that makes progress starts the deadline again: a client that takes
        data, however slowly, keeps its connection.
        """
        async with self.send_lock:
            try:
                with trio.CancelScope(shield=True), memoryview(data) as view:
                    sent = 0
                    while sent < len(view):
                        with trio.fail_after(self._send_timeout):
                            sent += await self._socket.send(view[sent:])
            except (OSError, trio.BrokenResourceError, trio.ClosedResourceError):
                await self.protocol.handle(Closed())
            except trio.TooSlowError:
                self._pressure.stalled()
                await self.stream.aclose()
                await self.protocol.handle(Closed())

    async def _read_data(self) -> None:
        """Read requests until the client is gone, then stop the idle timer.

        Hypercorn leaves the timer running when a client that never sent a whole
        request closes its side, so the connection, and its descriptor, stayed until
        the timer fired: a flood outlived its own sockets by the keep-alive timeout.
        """
        await super()._read_data()
        await self.idle_task.stop()

    async def _idle_timeout(self) -> None:
        """Close the connection after its idle time, when evicted, or when the server stops.

        Hypercorn runs this from connect, and again after each response; a request head
        coming in cancels it.
        """
        requested = self._connection.requested
        timeout = self.config.keep_alive_timeout if requested else self._header_timeout
        deadline = trio.move_on_after(timeout)
        with self._table.idle(self._connection, deadline), deadline:
            await self.context.terminated.wait()
        with trio.CancelScope(shield=True):
            await self._initiate_server_close()


async def serve_guarded(
    app: AppWrapper,
    config: Config,
    *,
    max_connections: int,
    header_timeout: float,
    send_timeout: float,
    shutdown_trigger: Callable[[], Awaitable[None]],
    per_address: int = 0,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``app`` as hypercorn's trio worker does, with at most ``max_connections``.

    A connection is closed when its first request head is not in ``header_timeout``
    after connect, or when its client takes no data for ``send_timeout``, and at once
    when its client address holds ``per_address`` already (0: no such limit).

    ``task_status`` receives the bound URLs. Shutdown, once ``shutdown_trigger``
    returns, is hypercorn's: listeners close, idle connections close, requests in
    flight get ``config.graceful_timeout``, then the app's lifespan ends.

    Cancellation: connections are closed at once; the lifespan's shutdown is skipped.
    """
    if config.ssl_enabled:
        raise ValueError("serve_guarded serves plain HTTP only")
    config.set_statsd_logger_class(StatsdLogger)
    lifespan_state: LifespanState = {}
    lifespan = Lifespan(app, config, lifespan_state)
    context = WorkerContext(None)
    pressure = Pressure(max_connections)
    table = ConnectionTable(max_connections, pressure, per_address)

    async with trio.open_nursery() as lifespan_nursery:
        await lifespan_nursery.start(lifespan.handle_lifespan)
        await lifespan.wait_for_startup()

        async with trio.open_nursery() as server_nursery:

            async def serve_connection(stream: trio.SocketStream, connection: Connection) -> None:
                try:
                    server = GuardedTCPServer(
                        app,
                        config,
                        context,
                        ConnectionState(lifespan_state.copy()),
                        stream,
                        table=table,
                        pressure=pressure,
                        connection=connection,
                        header_timeout=header_timeout,
                        send_timeout=send_timeout,
                    )
                    await server.run()
                finally:
                    try:
                        await trio.aclose_forcefully(stream)
                    finally:
                        table.release(connection)

            sockets = config.create_sockets().insecure_sockets
            listeners = []
            binds = []
            for sock in sockets:
                sock.listen(config.backlog)
                listeners.append(trio.SocketListener(trio.socket.from_stdlib_socket(sock)))
                binds.append(f"http://{repr_socket_addr(sock.family, sock.getsockname())}")
            task_status.started(binds)
            try:
                async with trio.open_nursery(strict_exception_groups=True) as nursery:
                    nursery.start_soon(raise_shutdown, shutdown_trigger)
                    nursery.start_soon(pressure.run)
                    for listener in listeners:
                        nursery.start_soon(
                            accept_connections,
                            listener,
                            table,
                            pressure,
                            server_nursery,
                            serve_connection,
                        )
            except BaseExceptionGroup as error:
                _, other_errors = error.split((ShutdownError, KeyboardInterrupt))
                if other_errors is not None:
                    raise other_errors from None
            finally:
                await context.terminated.set()
                server_nursery.cancel_scope.deadline = trio.current_time() + config.graceful_timeout

        await lifespan.wait_for_shutdown()
        lifespan_nursery.cancel_scope.cancel()


async def accept_connections(
    listener: trio.SocketListener,
    table: ConnectionTable,
    pressure: Pressure,
    handler_nursery: trio.Nursery,
    handler: Callable[[trio.SocketStream, Connection], Awaitable[None]],
) -> NoReturn:
    """Accept connections on ``listener`` while the table has room; start ``handler`` on each.

    Cancellation: the listener is closed; connections already accepted are the
    handler nursery's.
    """
    async with listener:
        while True:
            connection = await table.admit(listener.socket)
            try:
                stream = await listener.accept()
            except OSError as error:
                table.release(connection)
                if error.errno not in ACCEPT_CAPACITY_ERRNOS:
                    raise
                pressure.accept_failed(error.errno)
                await trio.sleep(ACCEPT_RETRY_SECONDS)
                continue
            except BaseException:
                table.release(connection)
                raise
            if not table.count_address(connection, _peer(stream)):
                try:
                    await trio.aclose_forcefully(stream)
                finally:
                    table.release(connection)
                continue
            handler_nursery.start_soon(handler, stream, connection)


def _peer(stream: trio.SocketStream) -> str:
    """Return the client's address of an accepted connection ('' once it is gone)."""
    try:
        peer = stream.socket.getpeername()
    except OSError:
        return ""
    return str(peer[0]) if isinstance(peer, tuple) else str(peer)
