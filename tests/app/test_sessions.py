"""Steering sessions over the JSON API on SQLite and on PostgreSQL: every knob change is
a typed event row with the items shown, committed before the answer; sessions belong to
their visitor; JSON endpoints refuse what a cross-site form could send; bodies are
size-limited."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from app.db.session import Database
from app.db.tables import Event, EventType, SteerSession
from app.main import create_app
from app.settings import Settings
from tests.app.conftest import migrated, postgres_database


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
        ) -> Iterator[str]:
    if request.param == "sqlite":
        yield migrated(f"sqlite:///{tmp_path_factory.mktemp('db') / 'knobs.db'}")
    else:
        with postgres_database() as pg:
            yield migrated(pg)


@pytest.fixture(scope="module")
def app_settings(bundle_dir: Path, url: str) -> Settings:
    return Settings(bundle=bundle_dir, device="cpu", database_url=url, max_body_bytes=4096)


@pytest.fixture(scope="module")
def client(app_settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(app_settings)) as c:
        yield c


def events(url: str, sid: str) -> list[Event]:
    db = Database(url)
    try:
        with db.read() as s:
            return list(s.scalars(select(Event).where(Event.session_id == sid)
                                  .order_by(Event.id)))
    finally:
        db.dispose()


def test_a_session_logs_each_knob_change_as_a_typed_row(client: TestClient, url: str
                                                         ) -> None:
    r = client.post("/api/v1/sessions", json={"user": 1, "n": 10})
    assert r.status_code == 201, r.text
    s = r.json()
    sid, own = s["id"], [k["key"] for k in s["knobs"]]
    assert len(sid) >= 40 and own and all(k["alpha"] == 0 for k in s["knobs"])
    assert s["events"] == [] and len(s["steered"]) == 10

    def put(knobs: list[dict[str, object]]) -> dict[str, object]:
        r = client.put(f"/api/v1/sessions/{sid}/knobs", json={"knobs": knobs})
        assert r.status_code == 200, r.text
        return r.json()  # type: ignore[no-any-return]

    base = [{"key": k, "alpha": 0.0} for k in own]
    moved = put([{"key": own[0], "alpha": 0.4}, *base[1:]])
    added = put([{"key": own[0], "alpha": 0.4}, *base[1:],
                 {"key": "c:concept-3", "alpha": 0.3}])
    turned = put([{"key": own[0], "alpha": 0.4, "direction": "less"}, *base[1:],
                  {"key": "c:concept-3", "alpha": 0.3}])
    removed = put([{"key": own[0], "alpha": 0.4, "direction": "less"}, *base[1:]])
    reset = client.post(f"/api/v1/sessions/{sid}/reset", json={}).json()
    shown = [i["id"] for i in reset["steered"]]
    click = client.post(f"/api/v1/sessions/{sid}/events",
                        json={"type": "item_click", "item": shown[2]})
    assert click.status_code == 201
    rows = events(url, sid)
    assert [(e.type, e.knob, e.value, e.direction) for e in rows] == [
        (EventType.knob_move, own[0], 0.4, "more"),
        (EventType.knob_add, "c:concept-3", 0.3, "more"),
        (EventType.direction_change, own[0], 0.4, "less"),
        (EventType.knob_remove, "c:concept-3", None, None),
        (EventType.reset, None, None, None),
        (EventType.item_click, None, None, None)]
    acknowledged = [*moved["events"], *added["events"], *turned["events"],  # type: ignore[misc]
                    *removed["events"], *reset["events"], click.json()["id"]]
    assert [e.id for e in rows] == acknowledged
    assert rows[1].shown == [i["id"] for i in added["steered"]]  # type: ignore[index]
    assert rows[-1].item == shown[2] and rows[-1].shown == shown
    assert all(e.at is not None and e.participant_id is None for e in rows)
    again = client.get(f"/api/v1/sessions/{sid}").json()       # reading logs nothing
    assert [k["key"] for k in again["knobs"]] == own and len(events(url, sid)) == len(rows)


def test_sessions_belong_to_their_visitor(client: TestClient, app_settings: Settings
                                          ) -> None:
    sid = client.post("/api/v1/sessions", json={"items": [1, 2, 3]}).json()["id"]
    with TestClient(client.app) as other:
        assert other.get(f"/api/v1/sessions/{sid}").status_code == 404
        r = other.put(f"/api/v1/sessions/{sid}/knobs", json={"knobs": []})
        assert r.status_code == 404 and "unknown session" in r.json()["detail"]
    with TestClient(client.app) as forger:
        forger.cookies.set("knobs_visitor", client.cookies["knobs_visitor"][:-3] + "abc")
        assert forger.get(f"/api/v1/sessions/{sid}").status_code == 404
    assert client.get(f"/api/v1/sessions/{sid}").status_code == 200


def test_bad_session_input_is_named(client: TestClient) -> None:
    sid = client.post("/api/v1/sessions", json={"user": 1}).json()["id"]
    for body, field in (({"knobs": [{"key": "n:1", "alpha": 2}]}, "alpha"),
                        ({"knobs": [{"key": "q:1", "alpha": 0.1}]}, "key"),
                        ({"knobs": [{"key": "n:1", "alpha": 0.1}] * 2}, "the same knob")):
        r = client.put(f"/api/v1/sessions/{sid}/knobs", json=body)
        assert r.status_code == 422 and field in r.text
    for key in ("c: Concept-3 ", "n:01", "n:¹", "p:1", "n:1\x00"):
        r = client.put(f"/api/v1/sessions/{sid}/knobs", json={"knobs": [
            {"key": "c:concept-3", "alpha": 0.1}, {"key": "n:1", "alpha": 0.1},
            {"key": key, "alpha": 0.1}]})
        assert r.status_code == 422, (key, r.text)          # one knob, one spelling
    for bad in ("a%00b", "x" * 65, "..%2Fx"):
        assert client.get(f"/api/v1/sessions/{bad}").status_code == 404
    r = client.put(f"/api/v1/sessions/{sid}/knobs",
                   json={"knobs": [{"key": "c:nothing-like-it", "alpha": 0.1}]})
    assert r.status_code == 404 and "unknown concept" in r.text
    r = client.post(f"/api/v1/sessions/{sid}/events", json={"item": 10 ** 6})
    assert r.status_code == 404 and "not on this screen" in r.text
    r = client.post("/api/v1/sessions", json={"items": [1, 2]})
    assert r.status_code == 422 and "items" in r.text


def test_json_endpoints_refuse_a_cross_site_form(client: TestClient, url: str) -> None:
    sid = client.post("/api/v1/sessions", json={"user": 1}).json()["id"]
    client.put(f"/api/v1/sessions/{sid}/knobs", json={"knobs": [{"key": "n:1", "alpha": 0.5}]})
    before = len(events(url, sid))
    for kind in ("text/plain", "application/x-www-form-urlencoded", None):
        headers = {"Content-Type": kind} if kind else {}
        r = client.post(f"/api/v1/sessions/{sid}/reset", headers=headers)   # no body
        assert r.status_code == 415 and "application/json" in r.text
        r = client.put(f"/api/v1/sessions/{sid}/knobs", content='{"knobs": []}',
                       headers=headers)
        assert r.status_code == 422
        r = client.post("/api/v1/sessions", content='{"user": 1}', headers=headers)
        assert r.status_code == 422
    assert len(events(url, sid)) == before


def test_request_bodies_are_size_limited(client: TestClient) -> None:
    sid = client.post("/api/v1/sessions", json={"user": 1}).json()["id"]
    big = {"knobs": [{"key": "c:" + "x" * 190, "alpha": 0.0}] * 30}
    r = client.put(f"/api/v1/sessions/{sid}/knobs", json=big)
    assert r.status_code == 413 and "at most 4096 bytes" in r.json()["detail"]

    def chunks() -> Iterator[bytes]:        # no Content-Length: read up to the limit
        yield b'{"knobs": ['
        for _ in range(60):
            yield b'{"key": "c:' + b"x" * 150 + b'", "alpha": 0.0},'
        yield b"]}"

    for path, method in ((f"/api/v1/sessions/{sid}/knobs", "PUT"), ("/sessions", "POST")):
        r = client.request(method, path, content=chunks(),
                           headers={"Content-Type": "application/json"})
        assert r.status_code == 413 and "at most 4096 bytes" in r.text
    small = client.request("PUT", f"/api/v1/sessions/{sid}/knobs",
                           content=iter([b'{"knobs": ', b"[]}"]),
                           headers={"Content-Type": "application/json"})
    assert small.status_code == 200
    db_state = client.get(f"/api/v1/sessions/{sid}").json()
    assert all(not k["key"].startswith("c:x") for k in db_state["knobs"])


def test_a_commit_is_durable(client: TestClient, url: str) -> None:
    """A SIGKILL test keeps the OS cache: check the settings that make commits survive
    a power cut too."""
    db = client.app.state.db  # type: ignore[attr-defined]
    with db.write() as s:
        run = s.connection().exec_driver_sql
        if url.startswith("sqlite"):
            got = [run(f"PRAGMA {p}").scalar()
                   for p in ("journal_mode", "synchronous", "foreign_keys")]
            assert got == ["wal", 2, 1]        # WAL, synchronous=FULL: fsync'd commits
        else:
            got = [run(f"SHOW {p}").scalar() for p in ("fsync", "synchronous_commit")]
            assert got == ["on", "on"]


def test_concurrent_changes_to_one_session_all_land(client: TestClient, url: str) -> None:
    from concurrent.futures import ThreadPoolExecutor
    sid = client.post("/api/v1/sessions", json={"user": 3}).json()["id"]
    keys = [f"n:{n}" for n in range(8)]

    def move(i: int) -> list[int]:
        knobs = [{"key": k, "alpha": round(0.01 * (i + 1), 2) if k == keys[i % 8] else 0.0}
                 for k in keys]
        r = client.put(f"/api/v1/sessions/{sid}/knobs", json={"knobs": knobs})
        assert r.status_code == 200, r.text
        return r.json()["events"]  # type: ignore[no-any-return]

    with ThreadPoolExecutor(8) as pool:
        acked = [e for ids in pool.map(move, range(24)) for e in ids]
    rows = events(url, sid)
    assert sorted(acked) == [e.id for e in rows] and len(set(acked)) == len(acked)
    db = Database(url)
    try:
        with db.read() as s:
            row = s.get(SteerSession, sid)
            assert row is not None and row.version >= 24
    finally:
        db.dispose()
