"""The service's HTTP protocol joins the writes of one event loop turn (a response's headers and
body) into one write to the socket, in order; closing writes what is pending first."""
import asyncio

import httpx
from fastapi import FastAPI
from fastapi.responses import JSONResponse

from recsys.app.one_write import JoiningTransport


class _Recording(asyncio.Transport):
    def __init__(self):
        super().__init__()
        self.writes, self.closed = [], False

    def write(self, data):
        self.writes.append(bytes(data))

    def close(self):
        self.closed = True

    def is_closing(self):
        return self.closed

    def get_write_buffer_size(self):
        return 0


def test_writes_of_one_turn_leave_in_one_write_and_close_flushes_first():
    async def scenario():
        inner = _Recording()
        t = JoiningTransport(inner)
        t.write(b"HTTP/1.1 200 OK\r\n\r\n")
        t.write(memoryview(b'{"a": 1}'))
        assert inner.writes == [] and t.get_write_buffer_size() == 27
        await asyncio.sleep(0)  # the end of the turn
        assert inner.writes == [b'HTTP/1.1 200 OK\r\n\r\n{"a": 1}']
        t.write(b"next")
        t.close()
        assert inner.writes[1:] == [b"next"] and inner.closed
        await asyncio.sleep(0)
        assert len(inner.writes) == 2  # nothing written twice, nothing after the close

    asyncio.run(scenario())


def test_a_real_server_on_the_protocol_answers_keep_alive_requests(tmp_path):
    """uvicorn with OneWriteHttpTools on loopback: several requests on one connection, each whole."""
    import socket
    import threading
    import time

    import uvicorn

    from recsys.app.one_write import OneWriteHttpTools

    app = FastAPI()

    @app.post("/echo")
    async def echo(body: dict) -> JSONResponse:
        return JSONResponse(body)

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, port=port, http=OneWriteHttpTools, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while not server.started:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
            for i in range(20):
                body = {"i": i, "pad": "x" * (i * 5000)}
                assert client.post("/echo", json=body).json() == body
    finally:
        server.should_exit = True
        thread.join(10)
