"""`knobs serve --workers N`: N uvicorn processes, each accepting connections on its own
socket bound with SO_REUSEPORT, so the kernel spreads new connections over them by hash.

uvicorn's own multi-worker mode shares one listening socket: whichever worker wakes first
takes most of a burst of new connections, and keep-alive connections stay where they
landed (64 wrk connections: 44 on one worker, 20 on the other). With a socket each, the
kernel picks by a hash of the connection (33 / 31 to 39 / 25 in the benchmark's runs).
Where SO_REUSEPORT is missing (not Linux) the caller falls back to uvicorn's mode.

The parent loads no model. It checks that the port is free (a plain bind: SO_REUSEPORT
alone would quietly share the port with another server), then holds it with a socket
bound with SO_REUSEPORT only, never listening (so a second server's check fails even
while our workers are still loading), starts the workers, replaces one that dies after
it started serving, and stops them all on SIGINT / SIGTERM. A worker that dies before
it is ready stops the server (a replacement would only fail the same way). Workers get
SIGTERM when the parent dies, so none is left holding the port.
"""

from __future__ import annotations

import ctypes
import logging
import multiprocessing
import os
import signal
import socket
import sys
import threading
import time
from multiprocessing.process import BaseProcess
from multiprocessing.synchronize import Event
from types import FrameType

log = logging.getLogger("knobs.workers")

PR_SET_PDEATHSIG = 1


class WorkerError(RuntimeError):
    """The workers cannot serve: the message says why."""


def reuse_port_supported() -> bool:
    """SO_REUSEPORT with load balancing across sockets (Linux >= 3.9)."""
    return sys.platform.startswith("linux") and hasattr(socket, "SO_REUSEPORT")


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def hold_port(host: str, port: int) -> socket.socket:
    """The port, checked free and held for our workers (module doc); WorkerError naming
    the address if something is bound there."""
    probe = socket.socket(_family(host), socket.SOCK_STREAM)
    try:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)   # TIME_WAIT is fine
        probe.bind((host, port))
    except OSError as exc:
        raise WorkerError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    finally:
        probe.close()
    hold = socket.socket(_family(host), socket.SOCK_STREAM)
    try:
        hold.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        hold.bind((host, port))
    except OSError as exc:
        hold.close()
        raise WorkerError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    return hold


def reuse_port_socket(host: str, port: int) -> socket.socket:
    # IPPROTO_TCP named, not 0: asyncio turns Nagle's algorithm off (TCP_NODELAY) only on
    # sockets whose proto says TCP, and an answer written as head then body would
    # otherwise wait for the client's delayed ACK (~40 ms a request)
    sock = socket.socket(_family(host), socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock


def die_with_parent(parent: int) -> None:
    """SIGTERM this process when its parent dies (Linux prctl); exit now if it has."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:
        sys.exit(1)


def _serve_one(host: str, port: int, log_level: str, loop: str, parent: int,
               ready: Event) -> None:
    """A worker: its own socket, the app from the environment (KNOBS_*); `ready` set
    once uvicorn serves."""
    import uvicorn

    die_with_parent(parent)

    class Server(uvicorn.Server):
        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets)
            if self.started:
                ready.set()

    sock = reuse_port_socket(host, port)
    config = uvicorn.Config("app.main:create_app", factory=True, log_level=log_level,
                            loop=loop, http="httptools")
    Server(config).run(sockets=[sock])


def run_workers(host: str, port: int, workers: int, log_level: str = "info",
                loop: str = "asyncio") -> None:
    """Serve with `workers` processes (uvicorn's event `loop`: asyncio, uvloop or auto)
    until SIGINT / SIGTERM; WorkerError if the port is taken or a worker fails to
    start."""
    hold = hold_port(host, port)
    ctx = multiprocessing.get_context("spawn")
    stop = threading.Event()

    def start() -> tuple[BaseProcess, Event]:
        ready = ctx.Event()
        p = ctx.Process(target=_serve_one,
                        args=(host, port, log_level, loop, os.getpid(), ready))
        p.start()
        return p, ready

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    procs: list[tuple[BaseProcess, Event]] = []
    failed: str | None = None
    try:
        procs = [start() for _ in range(workers)]
        while not stop.wait(0.2):
            for i, (p, ready) in enumerate(procs):
                if p.is_alive():
                    continue
                if not ready.is_set():
                    failed = (f"worker {p.pid} exited with status {p.exitcode} while "
                              "starting (its log is above)")
                    stop.set()
                    break
                log.warning("worker %s exited with status %s; starting another", p.pid,
                            p.exitcode)
                procs[i] = start()
    finally:
        for p, _ in procs:
            if p.is_alive():
                p.terminate()                     # SIGTERM: uvicorn shuts down gracefully
        deadline = time.monotonic() + 15
        for p, _ in procs:
            p.join(max(0.0, deadline - time.monotonic()))
        for p, _ in procs:
            if p.is_alive():
                p.kill()
                p.join()
        for s, handler in previous.items():
            signal.signal(s, handler)
        hold.close()
    if failed:
        raise WorkerError(failed)
