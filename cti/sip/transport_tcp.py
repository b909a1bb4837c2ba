"""SIP over TCP: the listener, the connection table and one framer per connection
(RFC 3261 §18, RFC 5626 keep-alives).

Owns: accepting connections (up to a cap), opening connections for what must be sent
to a peer with none open, the table that finds a connection by the peer's address (or
an alias, its Via sent-by) so that requests and responses to a peer reuse it, closing
connections that stay idle, and writing what a connection's framer asks for (pongs, the
400 before a framing error closes it). Complete messages go to `on_message`, as UDP
datagrams do.
Must never: parse or judge SIP beyond framing (the transaction layer does), or let one
peer stop the listener: a connection that misbehaves is closed and the rest go on.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import cast

from cti.sip.framing import MAX_MESSAGE, CloseConnection, MessageFramed, SendBytes, StreamFramer

log = logging.getLogger("cti.sip.tcp")

Address = tuple[str, int]

MAX_WRITE_BUFFER = 1024 * 1024  # a peer that stops reading is cut off, not buffered for


class _Connection(asyncio.Protocol):
    def __init__(self, owner: SipTcpEndpoint) -> None:
        self._owner = owner
        self._framer = StreamFramer(owner.max_message)
        self.transport: asyncio.Transport | None = None
        self.peer: Address = ("", 0)
        self._last_activity = 0.0
        self._idle: asyncio.TimerHandle | None = None

    @property
    def open(self) -> bool:
        return self.transport is not None and not self.transport.is_closing()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = stream = cast(asyncio.Transport, transport)
        peer = stream.get_extra_info("peername")
        self.peer = (str(peer[0]), int(peer[1])) if peer else ("", 0)
        if not self._owner._register(self):
            stream.abort()
            return
        self._touch()
        self._arm_idle(self._owner.idle_timeout)

    def data_received(self, data: bytes) -> None:
        self._touch()
        for output in self._framer.feed(data):
            match output:
                case MessageFramed(data=message):
                    self._owner.on_message(message, self.peer)
                case SendBytes(data=reply):
                    self.write(reply)
                case CloseConnection(reason=reason):
                    log.info("closing TCP connection from %s:%s: %s", self.peer[0], self.peer[1], reason)
                    self.close()

    def eof_received(self) -> bool | None:
        return None  # the peer is done sending: close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        if self._idle is not None:
            self._idle.cancel()
        self._owner._unregister(self)

    def write(self, data: bytes) -> None:
        if not self.open:
            return
        assert self.transport is not None
        if self.transport.get_write_buffer_size() > MAX_WRITE_BUFFER:
            log.warning("TCP peer %s:%s does not read; connection aborted", self.peer[0], self.peer[1])
            self.transport.abort()
            return
        self._touch()
        self.transport.write(data)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def _touch(self) -> None:
        self._last_activity = asyncio.get_running_loop().time()

    def _arm_idle(self, delay: float) -> None:
        self._idle = asyncio.get_running_loop().call_later(delay, self._check_idle)

    def _check_idle(self) -> None:
        idle_for = asyncio.get_running_loop().time() - self._last_activity
        if idle_for >= self._owner.idle_timeout:
            log.debug("TCP connection %s:%s idle for %.0f s: closed", self.peer[0], self.peer[1], idle_for)
            self.close()
        else:
            self._arm_idle(self._owner.idle_timeout - idle_for)


class SipTcpEndpoint:
    """The TCP side of a SIP endpoint: a listener plus the connections to and from peers."""

    def __init__(
        self,
        on_message: Callable[[bytes, Address], None],
        *,
        idle_timeout: float = 300.0,
        max_connections: int = 1024,
        max_message: int = MAX_MESSAGE,
        connect_timeout: float = 5.0,
    ) -> None:
        self.on_message = on_message
        self.idle_timeout = idle_timeout
        self.max_connections = max_connections
        self.max_message = max_message
        self.connect_timeout = connect_timeout
        self._server: asyncio.Server | None = None
        self._connections: dict[Address, _Connection] = {}
        self._aliases: dict[Address, Address] = {}  # e.g. a peer's Via sent-by -> its connection
        self._pending: dict[Address, list[bytes]] = {}  # connections being opened, with what waits
        self._tasks: set[asyncio.Task[None]] = set()
        self.connections_refused = 0

    async def start(self, host: str, port: int) -> Address:
        self._server = await asyncio.get_running_loop().create_server(lambda: _Connection(self), host, port)
        return self.local_address

    @property
    def local_address(self) -> Address:
        assert self._server is not None and self._server.sockets, "TCP endpoint not started"
        host, port = self._server.sockets[0].getsockname()[:2]
        return str(host), int(port)

    @property
    def serving(self) -> bool:
        return self._server is not None and self._server.is_serving()

    @property
    def connection_count(self) -> int:
        return len(self._connections)

    def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in self._tasks:
            task.cancel()
        for connection in list(self._connections.values()):
            connection.close()
        self._pending.clear()

    async def wait_closed(self) -> None:
        if self._server is not None:
            await self._server.wait_closed()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    # --- sending ---------------------------------------------------------------------

    def send(self, data: bytes, destination: Address, *, fallback: Address | None = None) -> None:
        """Write on the open connection to `destination`; failing that (a response whose
        connection is gone, §18.2.2) on one to `fallback`; failing that on a new one."""
        for address in (destination, fallback):
            connection = self._find(address) if address is not None else None
            if connection is not None:
                connection.write(data)
                return
        target = fallback or destination
        if target in self._pending:
            self._pending[target].append(data)
            return
        if len(self._connections) + len(self._pending) >= self.max_connections:
            log.warning("TCP connection cap reached: message to %s:%s dropped", target[0], target[1])
            return
        self._pending[target] = [data]
        task = asyncio.get_running_loop().create_task(self._connect(target))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _connect(self, target: Address) -> None:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.connect_timeout):
                _, connection = await loop.create_connection(lambda: _Connection(self), target[0], target[1])
        except (OSError, TimeoutError) as err:
            dropped = self._pending.pop(target, [])
            log.info("TCP connection to %s:%s failed (%s): %d message(s) dropped", target[0], target[1], err, len(dropped))
            return
        queued = self._pending.pop(target, [])
        if connection.peer != target:
            self.alias(target, connection.peer)
        for data in queued:
            connection.write(data)

    def alias(self, address: Address, peer: Address) -> None:
        """Let messages for `address` use the connection with `peer`, while it lasts."""
        if peer in self._connections:
            self._aliases[address] = peer

    def has_connection(self, address: Address) -> bool:
        return self._find(address) is not None

    def _find(self, address: Address) -> _Connection | None:
        connection = self._connections.get(address) or self._connections.get(self._aliases.get(address, ("", 0)))
        return connection if connection is not None and connection.open else None

    # --- the connection table --------------------------------------------------------

    def _register(self, connection: _Connection) -> bool:
        if len(self._connections) >= self.max_connections:
            self.connections_refused += 1
            log.warning("TCP connection cap (%d) reached: %s:%s refused", self.max_connections, *connection.peer)
            return False
        self._connections[connection.peer] = connection
        return True

    def _unregister(self, connection: _Connection) -> None:
        if self._connections.get(connection.peer) is connection:
            del self._connections[connection.peer]
            for alias in [a for a, peer in self._aliases.items() if peer == connection.peer]:
                del self._aliases[alias]
