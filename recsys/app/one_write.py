"""uvicorn's httptools protocol with a response sent in one write.

uvicorn writes a response's status line and headers to the socket at `http.response.start` and its
body at `http.response.body`: two writes, two segments. On a loaded machine the first wakes the
client, which may take the CPU from the service before the body is written (a service thread that
has just scored a /rank request has used its time slice), and the client then waits a scheduling
round for the body. Measured with py-spy on /rank (2-core machine, load ~10): the headers' write
was the largest single line of the service's main thread. Here the writes of one turn of the event
loop are joined and sent at its end: the ASGI messages of a response sent back to back (as
every Starlette Response and recsys.app.service's fast paths do) leave in one write.
"""
from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class OneWriteHttpTools(HttpToolsProtocol):
    """HttpToolsProtocol on a transport that joins the writes of one event loop turn."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(JoiningTransport(transport))


class JoiningTransport(asyncio.Transport):
    """`transport` whose writes are buffered until the end of the event loop's current turn, then
    written at once; closing writes what is buffered first."""

    def __init__(self, transport: asyncio.Transport) -> None:
        super().__init__()
        self.inner = transport
        self.pending: list[bytes] = []

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not self.pending:
            asyncio.get_running_loop().call_soon(self.flush)
        self.pending.append(bytes(data))

    def flush(self) -> None:
        if self.pending:
            data = b"".join(self.pending)
            self.pending.clear()
            if not self.inner.is_closing():
                self.inner.write(data)

    def close(self) -> None:
        self.flush()
        self.inner.close()

    def abort(self) -> None:
        self.pending.clear()
        self.inner.abort()

    def is_closing(self) -> bool:
        return self.inner.is_closing()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.inner.get_extra_info(name, default)

    def pause_reading(self) -> None:
        self.inner.pause_reading()

    def resume_reading(self) -> None:
        self.inner.resume_reading()

    def is_reading(self) -> bool:
        return self.inner.is_reading()

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self.inner.set_protocol(protocol)

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self.inner.get_protocol()

    def get_write_buffer_size(self) -> int:
        return self.inner.get_write_buffer_size() + sum(map(len, self.pending))

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self.inner.set_write_buffer_limits(high, low)
