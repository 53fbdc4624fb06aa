"""One pipelined Redis connection: the bus's hot path (publishes, reads, doorbells) without a pool.

redis-py's asyncio client takes a connection from a pool for each command,
wraps it in coroutines and a timeout, and awaits each reply on its own; at
thousands of messages a second that is most of the server's CPU
(bench/RESULTS.md, "Redis pool"). A ``Wire`` is one connection with many
commands in flight: the commands queued during one turn of the event loop
leave in one write, hiredis parses replies as they arrive, and Redis answers
in order, so each reply goes to the oldest waiting future. A subscribed
connection's messages go to ``on_push`` instead.

Failures keep redis-py's exception classes, so the call policy
(``client.py``) treats both clients alike: a lost connection or a command
older than ``timeout`` closes the wire and fails every command in flight with
``ConnectionError`` / ``TimeoutError`` (they may or may not have run); an
error reply is a ``ResponseError`` for that command alone.
"""

from __future__ import annotations

import asyncio
import collections
import ssl
import time
from typing import Any, Callable, cast

import hiredis
from redis.asyncio.connection import SSLConnection, UnixDomainSocketConnection, parse_url
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

Push = Callable[[Any], None]


# A command in RESP, an array of bulk strings: hiredis's encoder, in C (cheaper than one in Python).
encode: Callable[[tuple[Any, ...]], bytes] = hiredis.pack_command


class Wire(asyncio.Protocol):
    def __init__(self, timeout: float | None) -> None:
        self.timeout = timeout
        self.on_push: Push | None = None  # set once subscribed: every reply is then a push
        self._transport: asyncio.Transport | None = None
        self._reader = hiredis.Reader(encoding="utf-8", errors="replace")
        self._waiting: collections.deque[tuple[asyncio.Future[Any], float]] = collections.deque()
        self._out: list[bytes] = []
        self._loop = asyncio.get_running_loop()
        self._watchdog: asyncio.TimerHandle | None = None
        self.lost: BaseException | None = None

    # ---- opening and closing ---------------------------------------------------------

    @classmethod
    async def open(cls, url: str, *, timeout: float | None, client_name: str, select_db: bool = True) -> "Wire":
        """Connect, authenticate, name the connection and choose the database (not on a cluster)."""
        params: dict[str, Any] = dict(parse_url(url))
        wire = cls(timeout)
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                if params.get("connection_class") is UnixDomainSocketConnection:
                    await loop.create_unix_connection(lambda: wire, params["path"])
                else:
                    context = _ssl_context(params) if params.get("connection_class") is SSLConnection else None
                    host, port = params.get("host", "127.0.0.1"), params.get("port", 6379)
                    await loop.create_connection(lambda: wire, host, port, ssl=context)
                if params.get("password"):
                    auth = ("AUTH", params["username"], params["password"]) if params.get("username") else None
                    await wire.execute(*(auth or ("AUTH", params["password"])))
                await wire.execute("CLIENT", "SETNAME", client_name)
                if select_db and params.get("db"):
                    await wire.execute("SELECT", params["db"])
        except TimeoutError as exc:
            wire.close(RedisTimeoutError(f"connecting to redis took over {timeout} s"))
            raise RedisTimeoutError(f"connecting to redis took over {timeout} s") from exc
        except OSError as exc:
            wire.close()
            raise RedisConnectionError(f"connecting to redis: {exc}") from exc
        except BaseException:
            wire.close()
            raise
        return wire

    @property
    def closed(self) -> bool:
        return self.lost is not None

    def close(self, exc: BaseException | None = None) -> None:
        self._fail(exc or RedisConnectionError("connection closed"))
        if self._transport is not None:
            self._transport.abort()

    def _fail(self, exc: BaseException) -> None:
        if self.lost is None:
            self.lost = exc
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        while self._waiting:
            future, _ = self._waiting.popleft()
            if not future.done():
                future.set_exception(self.lost)
        if self.on_push is not None:
            push, self.on_push = self.on_push, None
            push(self.lost)  # a subscriber learns that its connection is gone

    # ---- asyncio.Protocol --------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass of it

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(RedisConnectionError(f"connection to redis lost: {exc}" if exc else "connection to redis lost"))

    def data_received(self, data: bytes) -> None:
        reader = self._reader
        reader.feed(data)
        try:
            reply = reader.gets()
            while reply is not False:
                self._answer(reply)
                reply = reader.gets()
        except hiredis.ProtocolError as exc:
            self.close(RedisConnectionError(f"redis protocol error: {exc}"))

    def _answer(self, reply: Any) -> None:
        if self.on_push is not None:
            self.on_push(reply)
            return
        if not self._waiting:
            self.close(RedisConnectionError("redis answered a command that was not sent"))
            return
        future, _ = self._waiting.popleft()
        if future.done():  # its caller was cancelled: the reply is still this command's
            return
        if isinstance(reply, hiredis.ReplyError):
            future.set_exception(ResponseError(str(reply)))
        else:
            future.set_result(reply)

    # ---- commands ----------------------------------------------------------------------

    def send(self, *args: Any) -> asyncio.Future[Any]:
        """Queue a command; it leaves with the others of this loop turn. The future gets its reply."""
        future = self._loop.create_future()
        if self.lost is not None:
            future.set_exception(self.lost)
            return future
        if not self._out:
            self._loop.call_soon(self._flush)
        self._out.append(encode(args))
        if self.on_push is None:
            self._waiting.append((future, time.monotonic()))
            self._arm()
        else:
            future.set_result(None)  # a subscriber's answers come as pushes
        return future

    async def execute(self, *args: Any) -> Any:
        return await self.send(*args)

    def _flush(self) -> None:
        out, self._out = self._out, []
        if self._transport is not None and self.lost is None:
            self._transport.write(out[0] if len(out) == 1 else b"".join(out))

    # ---- the one timer: the oldest command in flight ---------------------------------

    def _arm(self) -> None:
        if self._watchdog is None and self.timeout:
            self._watchdog = self._loop.call_later(self.timeout, self._check)

    def _check(self) -> None:
        self._watchdog = None
        if not self._waiting:
            return
        sent_at = self._waiting[0][1]
        late = time.monotonic() - sent_at
        assert self.timeout
        if late >= self.timeout:
            self.close(RedisTimeoutError(f"redis did not answer within {self.timeout} s"))
        else:
            self._watchdog = self._loop.call_later(self.timeout - late, self._check)


def _ssl_context(params: dict[str, Any]) -> ssl.SSLContext:
    context = ssl.create_default_context()
    if str(params.get("ssl_cert_reqs", "required")).lower() in ("none", "optional"):
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context
