"""One socket write per answer (app/coalesce.py): a held write leaves with the next one,
or at the end of the event loop's round; close flushes, abort drops; and uvicorn over
loopback with the protocol answers plain, streamed, HEAD and closing requests whole, one
write per plain answer."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from typing import Any

import uvicorn
from starlette.types import Receive, Scope, Send

from app.coalesce import CoalescingHttpTools, CoalescingTransport


class Recorder:
    """A transport that records what reaches it."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = self.aborted = False

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closed or self.aborted

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return f"info:{name}"


def test_a_held_write_leaves_with_the_next_or_at_the_end_of_the_round() -> None:
    async def run() -> list[list[bytes]]:
        loop = asyncio.get_running_loop()
        raw = Recorder()
        t = CoalescingTransport(raw, loop)  # type: ignore[arg-type]
        seen = []
        t.write(b"head ")
        seen.append(list(raw.writes))          # held
        t.write(b"body")
        seen.append(list(raw.writes))          # both, as one
        t.write(b"alone")
        seen.append(list(raw.writes))          # held...
        await asyncio.sleep(0)
        seen.append(list(raw.writes))          # ...until the round ends
        await asyncio.sleep(0)
        seen.append(list(raw.writes))          # the flush left nothing behind
        assert t.get_extra_info("socket") == "info:socket"     # the rest passes through
        t.write(b"last")
        t.close()
        seen.append(list(raw.writes) + [b"closed" if raw.closed else b"open"])
        return seen

    seen = asyncio.run(run())
    assert seen == [[], [b"head body"], [b"head body"], [b"head body", b"alone"],
                    [b"head body", b"alone"], [b"head body", b"alone", b"last", b"closed"]]


def test_writelines_eof_and_the_buffer_size_count_a_held_write() -> None:
    async def run() -> tuple[list[bytes], int, int, bool]:
        loop = asyncio.get_running_loop()
        raw = Recorder()
        raw.get_write_buffer_size = lambda: 7                   # type: ignore[attr-defined]
        raw.write_eof = lambda: raw.writes.append(b"EOF")       # type: ignore[attr-defined]
        t = CoalescingTransport(raw, loop)  # type: ignore[arg-type]
        t.writelines([b"a", b"b"])                  # held, as one write
        held = t.get_write_buffer_size()
        t.writelines([b"c"])                        # leaves with the held one
        after = t.get_write_buffer_size()
        t.write(b"d")
        t.write_eof()                               # the held write first
        await asyncio.sleep(0)
        return raw.writes, held, after, raw.closed

    writes, held, after, closed = asyncio.run(run())
    assert writes == [b"abc", b"d", b"EOF"] and held == 9 and after == 7 and not closed


def test_abort_drops_a_held_write_and_a_closing_transport_gets_none() -> None:
    async def run() -> tuple[Recorder, Recorder]:
        loop = asyncio.get_running_loop()
        aborted, closing = Recorder(), Recorder()
        a = CoalescingTransport(aborted, loop)  # type: ignore[arg-type]
        a.write(b"x")
        a.abort()
        c = CoalescingTransport(closing, loop)  # type: ignore[arg-type]
        c.write(b"y")
        closing.closed = True                   # the peer went away meanwhile
        await asyncio.sleep(0)
        return aborted, closing

    aborted, closing = asyncio.run(run())
    assert aborted.aborted and aborted.writes == []
    assert closing.writes == []


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return
    if scope["path"] == "/stream":
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/plain")]})
        for part in (b"one ", b"two ", b"three"):
            await send({"type": "http.response.body", "body": part, "more_body": True})
            await asyncio.sleep(0.01)
        await send({"type": "http.response.body", "body": b""})
        return
    body = b"x" * 5000
    await send({"type": "http.response.start", "status": 200, "headers": [
        (b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


WRITES: list[int] = []


class Counting(CoalescingHttpTools):
    """The protocol, counting the writes that reach the socket's transport."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        write = transport.write

        def counted(data: Any) -> None:
            WRITES.append(len(data))
            write(data)

        transport.write = counted  # type: ignore[method-assign]
        super().connection_made(transport)


def read_answer(sock: socket.socket) -> tuple[bytes, bytes]:
    """One HTTP/1.1 answer with a content-length or chunked: (head, body)."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, rest = data.split(b"\r\n\r\n", 1)
    if b"content-length:" in head.lower():
        size = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
        while len(rest) < size:
            rest += sock.recv(65536)
        return head, rest
    if b"chunked" in head.lower():
        while not rest.endswith(b"0\r\n\r\n"):
            rest += sock.recv(65536)
        return head, rest
    return head, rest


def test_uvicorn_answers_whole_with_one_write_each() -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", loop="asyncio",
                                           http=Counting, lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.time() + 10
        while not server.started and time.time() < deadline:
            time.sleep(0.01)
        with socket.create_connection(("127.0.0.1", port)) as c:
            for _ in range(5):                              # keep-alive, plain answers
                c.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                head, body = read_answer(c)
                assert head.startswith(b"HTTP/1.1 200") and body == b"x" * 5000
            assert len(WRITES) == 5 and all(n > 5000 for n in WRITES)   # head + body
            c.sendall(b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n")
            head, body = read_answer(c)
            assert b"one " in body and b"two " in body and body.endswith(b"0\r\n\r\n")
            c.sendall(b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n")
            data = b""
            while b"\r\n\r\n" not in data:
                data += c.recv(65536)
            assert data.startswith(b"HTTP/1.1 200") and data.endswith(b"\r\n\r\n")
            c.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            head, body = read_answer(c)
            assert body == b"x" * 5000 and c.recv(10) == b""          # then closed
    finally:
        server.should_exit = True
        thread.join(10)
