"""The workers' listening sockets (app/workers.py)."""

from __future__ import annotations

import asyncio
import socket

from app.workers import reuse_port_socket


def test_connections_on_a_worker_socket_send_without_nagle() -> None:
    """asyncio turns Nagle's algorithm off (TCP_NODELAY) only on sockets whose proto says
    TCP; on a socket made with proto 0 every answer written as head then body waited for
    the client's delayed ACK, ~40 ms a request (measured with `knobs serve --loop
    asyncio`). Connections accepted on a worker's socket must have it off."""
    sock = reuse_port_socket("127.0.0.1", 0)
    assert sock.proto == socket.IPPROTO_TCP

    async def accepted_nodelay() -> list[int]:
        seen: list[int] = []

        class Record(asyncio.Protocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                seen.append(transport.get_extra_info("socket").getsockopt(
                    socket.IPPROTO_TCP, socket.TCP_NODELAY))

        server = await asyncio.get_running_loop().create_server(Record, sock=sock)
        async with server:
            _, writer = await asyncio.open_connection(*sock.getsockname()[:2])
            for _ in range(100):
                if seen:
                    break
                await asyncio.sleep(0.01)
            writer.close()
            await writer.wait_closed()
        return seen

    assert asyncio.run(accepted_nodelay()) == [1]
