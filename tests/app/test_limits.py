"""Limits with a 413 / 422 naming them, and no starvation: slow and huge requests over
real HTTP (uvicorn on loopback) while other clients are served."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.app.conftest import migrated, uvicorn_process


@pytest.fixture(scope="module")
def server(bundle_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    url = migrated(f"sqlite:///{tmp_path_factory.mktemp('limits') / 'knobs.db'}")
    with uvicorn_process(bundle_dir, url) as (base, _):
        yield base


def test_each_limit_is_named(server: str) -> None:
    with httpx.Client(base_url=server) as c:
        cases = [
            (c.get("/api/v1/items", params={"q": "x" * 201}), 422, "q"),
            (c.get("/api/v1/users", params={"q": "1" * 21}), 422, "q"),
            (c.post("/api/v1/recommendations", json={"items": list(range(1, 502))}), 422,
             "items"),
            (c.post("/api/v1/recommendations", json={"user": 1, "knobs": [
                {"neuron": n, "alpha": 0.01} for n in range(33)]}), 422, "knobs"),
            (c.post("/api/v1/recommendations", json={"user": 1, "n": 101}), 422, "n"),
            (c.post("/api/v1/recommendations", content=b"{" + b" " * 70_000 + b"}",
                    headers={"Content-Type": "application/json"}), 413, "at most 65536"),
            (c.get("/steer", params={"items": list(range(1, 502))}), 422, "at most 500"),
        ]
        for r, status, names in cases:
            assert r.status_code == status and names in r.text, (r.status_code, r.text[:200])


def test_slow_and_huge_requests_do_not_starve_the_others(server: str) -> None:
    host, port = server.removeprefix("http://").split(":")
    stop = threading.Event()
    answers: list[bytes] = []

    def slowloris() -> None:      # a body trickling in, a byte every 0.2 s
        with socket.create_connection((host, int(port))) as s:
            s.sendall(b"POST /api/v1/recommendations HTTP/1.1\r\nHost: x\r\n"
                      b"Content-Type: application/json\r\nContent-Length: 60000\r\n\r\n")
            while not stop.is_set():
                try:
                    s.sendall(b" ")
                except OSError:
                    return
                time.sleep(0.2)

    def huge() -> None:           # a declared 50 MB body: refused before it is read
        with socket.create_connection((host, int(port))) as s:
            s.sendall(b"POST /api/v1/recommendations HTTP/1.1\r\nHost: x\r\n"
                      b"Content-Type: application/json\r\nContent-Length: 50000000\r\n\r\n"
                      + b" " * 10_000)
            s.settimeout(10)
            answers.append(s.recv(200))

    def chunked() -> None:        # an endless chunked body: cut off at the limit
        with httpx.Client(base_url=server, timeout=30) as c:
            def body() -> Iterator[bytes]:
                for _ in range(10_000):
                    yield b" " * 1000
            r = c.post("/api/v1/recommendations", content=body(),
                       headers={"Content-Type": "application/json"})
            answers.append(str(r.status_code).encode())

    hogs = [threading.Thread(target=slowloris) for _ in range(30)]
    hogs += [threading.Thread(target=huge) for _ in range(4)]
    hogs += [threading.Thread(target=chunked) for _ in range(4)]
    for t in hogs:
        t.start()
    time.sleep(0.5)
    latencies = []
    try:
        with httpx.Client(base_url=server, timeout=10) as c:
            for i in range(40):
                t0 = time.perf_counter()
                r = c.post("/api/v1/recommendations",
                           json={"user": 1 + i % 20, "n": 10,
                                 "knobs": [{"concept": "concept-2", "alpha": 0.3}]})
                latencies.append(time.perf_counter() - t0)
                assert r.status_code == 200
    finally:
        stop.set()
        for t in hogs:
            t.join(30)
    assert max(latencies) < 2.0, max(latencies)
    assert sorted(latencies)[len(latencies) // 2] < 0.2
    assert len(answers) == 8
    assert all(a.startswith(b"HTTP/1.1 413") for a in answers if a.startswith(b"HTTP"))
    assert [a for a in answers if not a.startswith(b"HTTP")] == [b"413"] * 4
