"""What studies rely on, over real HTTP with uvicorn in its own process: a SIGKILL in the
middle of a load loses no acknowledged event (SQLite and PostgreSQL), and a permalink
renders byte-identical HTML on a fresh server."""

from __future__ import annotations

import os
import re
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from app.db.session import Database
from app.db.tables import Event
from tests.app.conftest import migrated, postgres_database, uvicorn_process


@pytest.fixture(params=["sqlite", "postgres"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield migrated(f"sqlite:///{tmp_path / 'knobs.db'}")
    else:
        with postgres_database() as pg:
            yield migrated(pg)


def stored(url: str, ids: list[int]) -> set[int]:
    db = Database(url)
    try:
        with db.read() as s:
            found: set[int] = set()
            for i in range(0, len(ids), 500):
                found |= set(s.scalars(select(Event.id).where(Event.id.in_(ids[i:i + 500]))))
            return found
    finally:
        db.dispose()


@pytest.mark.slow
def test_sigkill_mid_load_loses_no_acknowledged_event(bundle_dir: Path, url: str) -> None:
    acked: list[int] = []
    errors: list[str] = []
    lock = threading.Lock()
    with uvicorn_process(bundle_dir, url) as (base, proc):
        def client(worker: int) -> None:
            with httpx.Client(base_url=base, timeout=10) as c:
                sid = c.post("/api/v1/sessions", json={"user": worker + 1}).json()["id"]
                for step in range(10_000):
                    body = {"knobs": [{"key": "n:1", "alpha": (step % 100) / 100}]}
                    try:
                        r = c.put(f"/api/v1/sessions/{sid}/knobs", json=body)
                    except httpx.HTTPError:
                        return                               # the server is gone
                    if r.status_code != 200:
                        errors.append(r.text)
                        return
                    with lock:
                        acked.extend(r.json()["events"])

        threads = [threading.Thread(target=client, args=(w,)) for w in range(12)]
        for t in threads:
            t.start()
        deadline = time.time() + 30
        while len(acked) < 300 and time.time() < deadline:
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        for t in threads:
            t.join(30)
        proc.wait(10)
    assert not errors, errors[:3]
    assert len(acked) >= 300
    assert stored(url, acked) == set(acked)


def test_a_permalink_is_byte_identical_on_a_fresh_server(bundle_dir: Path, tmp_path: Path
                                                         ) -> None:
    url = migrated(f"sqlite:///{tmp_path / 'knobs.db'}")
    with uvicorn_process(bundle_dir, url) as (base, _), httpx.Client(base_url=base) as c:
        s = c.post("/api/v1/sessions", json={"user": 2, "n": 15, "knobs": [
            {"key": "c:concept-3", "alpha": 0.45},
            {"key": "n:5", "alpha": 0.2, "direction": "less"}]}).json()
        page = c.get(f"/sessions/{s['id']}").text
        csrf = re.findall(r'name="csrf" value="([^"]+)"', page)[0]
        r = c.post(f"/sessions/{s['id']}/permalink", data={"csrf": csrf, "layout": "study"})
        assert r.status_code == 303
        link = r.headers["location"]
        first = c.get(link)
        assert first.status_code == 200
        shown = [int(i) for i in re.findall(r'data-item="(\d+)"',
                                            first.text.split('id="unsteered"')[0])]
        assert shown == [i["id"] for i in s["steered"]]      # the screen as it was
        assert "disabled" in first.text and "csrf" not in first.text
    with uvicorn_process(bundle_dir, url) as (base, _):
        again = httpx.get(base + link)
        other_visitor = httpx.get(base + link, cookies={"knobs_visitor": "x.y"})
    assert again.status_code == 200
    assert again.content == first.content == other_visitor.content
