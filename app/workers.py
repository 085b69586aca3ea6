"""`knobs serve --workers N`: N uvicorn processes, each accepting connections on its own
socket bound with SO_REUSEPORT, so the kernel spreads new connections evenly over them.

uvicorn's own multi-worker mode shares one listening socket: whichever worker wakes first
takes most of a burst of new connections, and keep-alive connections stay where they
landed (64 wrk connections: 44 on one worker, 20 on the other, its p99 twice the
other's). With a socket each, the kernel picks by a hash of the connection (33 / 31).
Where SO_REUSEPORT is missing (not Linux) the caller falls back to uvicorn's mode.

The parent loads no model: it checks that the port is free (a plain bind: SO_REUSEPORT
alone would quietly share the port with another server), starts the workers, restarts
one that dies, and stops them all on SIGINT / SIGTERM. A worker that dies within
STARTUP_S of starting stops the server (a restart would only fail the same way).
"""

from __future__ import annotations

import logging
import multiprocessing
import signal
import socket
import sys
import threading
import time
from multiprocessing.process import BaseProcess
from types import FrameType

log = logging.getLogger("knobs.workers")

STARTUP_S = 30.0
"""A worker that exits sooner than this after its start failed to start."""


class WorkerError(RuntimeError):
    """The workers cannot serve: the message says why."""


def reuse_port_supported() -> bool:
    """SO_REUSEPORT with load balancing across sockets (Linux >= 3.9)."""
    return sys.platform.startswith("linux") and hasattr(socket, "SO_REUSEPORT")


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def check_port_free(host: str, port: int) -> None:
    """WorkerError naming the address if something already listens there."""
    probe = socket.socket(_family(host), socket.SOCK_STREAM)
    try:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)   # TIME_WAIT is fine
        probe.bind((host, port))
    except OSError as exc:
        raise WorkerError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    finally:
        probe.close()


def reuse_port_socket(host: str, port: int) -> socket.socket:
    sock = socket.socket(_family(host), socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock


def _serve_one(host: str, port: int, log_level: str) -> None:
    """A worker: its own socket, the app from the environment (KNOBS_*)."""
    import uvicorn

    sock = reuse_port_socket(host, port)
    config = uvicorn.Config("app.main:create_app", factory=True, log_level=log_level)
    uvicorn.Server(config).run(sockets=[sock])


def run_workers(host: str, port: int, workers: int, log_level: str = "info") -> None:
    """Serve with `workers` processes until SIGINT / SIGTERM; WorkerError if the port is
    taken or a worker fails to start."""
    check_port_free(host, port)
    ctx = multiprocessing.get_context("spawn")
    stop = threading.Event()

    def start() -> tuple[BaseProcess, float]:
        p = ctx.Process(target=_serve_one, args=(host, port, log_level), daemon=False)
        p.start()
        return p, time.monotonic()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    procs = [start() for _ in range(workers)]
    failed: str | None = None
    try:
        while not stop.wait(0.2):
            for i, (p, started) in enumerate(procs):
                if p.is_alive():
                    continue
                if time.monotonic() - started < STARTUP_S:
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
        for p, _ in procs:
            p.join(15)
            if p.is_alive():
                p.kill()
                p.join()
        for s, handler in previous.items():
            signal.signal(s, handler)
    if failed:
        raise WorkerError(failed)
