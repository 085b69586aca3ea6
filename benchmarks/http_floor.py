"""The HTTP floor of this machine: uvicorn processes set up as `knobs serve --workers N`
sets up its workers (a socket each, bound with SO_REUSEPORT; the same event loop, asyncio
by default, and uvicorn's httptools protocol; request logging
off) that read each request's body and answer with the same canned JSON, doing no work.
`benchmarks.performance` drives it with the same wrk load as the app, so the report shows
what the server, the client and the machine cost before Knobs does anything.

    .venv/bin/python -m benchmarks.http_floor --port 8798 --bytes 9500   # one process
"""

from __future__ import annotations

import argparse

import uvicorn
from starlette.types import Receive, Scope, Send

from app.workers import die_with_parent, reuse_port_socket


def canned(size: int) -> bytes:
    """A JSON document of `size` bytes (at least 10)."""
    return b'{"pad":"' + b"x" * max(0, size - 10) + b'"}'


BODY = canned(9500)
"""The answer; `main` sets it from --bytes."""


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    """Every HTTP request: its body read, then BODY."""
    if scope["type"] != "http":
        return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False) and message["type"] == "http.request"
    await send({"type": "http.response.start", "status": 200, "headers": [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(BODY)).encode())]})
    await send({"type": "http.response.body", "body": BODY})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--bytes", type=int, default=9500, help="size of the answer")
    parser.add_argument("--loop", default="asyncio", choices=["asyncio", "uvloop", "auto"],
                        help="uvicorn's event loop (as `knobs serve --loop`)")
    parser.add_argument("--parent", type=int, default=None,
                        help="exit when this process (the benchmark) dies")
    args = parser.parse_args()
    if args.parent is not None:
        die_with_parent(args.parent)
    global BODY
    BODY = canned(args.bytes)
    sock = reuse_port_socket("127.0.0.1", args.port)
    config = uvicorn.Config(app, log_level="warning", access_log=False, loop=args.loop,
                            http="httptools")
    uvicorn.Server(config).run(sockets=[sock])


if __name__ == "__main__":
    main()
