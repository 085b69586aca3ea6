"""Event durability under load, over real HTTP: 50 concurrent clients x 200 knob moves
each (one knob_move event per answer) against `knobs serve` on loopback, on SQLite and on
PostgreSQL; then the same load on SQLite killed with SIGKILL half-way. Counts the rows
the database holds afterwards. Writes reports/durability.{json,md}.

    .venv/bin/python -m benchmarks.durability [--bundle bundles/ml-latest-small]
        [--postgres postgresql+psycopg://postgres@127.0.0.1:5432/test]

Each client opens a session through the JSON API (which logs nothing), then PUTs its
knobs 200 times; an event counts as acknowledged when its id came back in a 200 answer,
which the server sends only after the commit. The database is fresh for each run, so
every event row in it comes from this load.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import secrets
import signal
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from sqlalchemy import create_engine, func, select
from sqlalchemy.engine import make_url

from app.db.session import Database
from app.db.tables import Event
from benchmarks.common import REPO, migrated_url, start_server, wait_ready, write_reports


async def load(base: str, clients: int, events: int, users: list[int],
               stop_after: int | None = None) -> dict[str, Any]:
    """`clients` concurrent clients x `events` knob moves; the acknowledged event ids,
    latencies and failures. With `stop_after`, returns once that many are acknowledged
    (the caller kills the server) and the clients give up on errors."""
    acked: list[int] = []
    latencies: list[float] = []
    failures: list[str] = []
    reached = asyncio.Event()

    async def client(i: int) -> None:
        async with httpx.AsyncClient(base_url=base, timeout=60) as c:
            r = await c.post("/api/v1/sessions", json={"user": users[i % len(users)]})
            r.raise_for_status()
            sid, own = r.json()["id"], [k["key"] for k in r.json()["knobs"]]
            for step in range(events):          # the full knob state, the first one moved
                alpha = round((step + 1) % 100 / 100, 2)
                body = {"knobs": [{"key": k, "alpha": alpha if j == 0 else 0.0}
                                  for j, k in enumerate(own)]}
                t0 = time.perf_counter()
                try:
                    r = await c.put(f"/api/v1/sessions/{sid}/knobs", json=body)
                except httpx.HTTPError as exc:
                    failures.append(type(exc).__name__)
                    return
                if r.status_code != 200:
                    failures.append(f"{r.status_code} {r.text[:200]}")
                    if stop_after is None:
                        continue
                    return
                latencies.append(time.perf_counter() - t0)
                acked.extend(r.json()["events"])
                if stop_after is not None and len(acked) >= stop_after:
                    reached.set()

    t0 = time.perf_counter()
    tasks = [asyncio.create_task(client(i)) for i in range(clients)]
    if stop_after is None:
        await asyncio.gather(*tasks)
    else:
        await reached.wait()
    seconds = time.perf_counter() - t0
    lat = np.array(latencies) * 1e3 if latencies else np.zeros(1)
    return {"acked": acked, "tasks": tasks, "failures": failures, "seconds": seconds,
            "p50_ms": float(np.percentile(lat, 50)), "p99_ms": float(np.percentile(lat, 99))}


def count(url: str, ids: list[int] | None = None) -> int:
    """Event rows in the database (or how many of `ids` are there)."""
    db = Database(url)
    try:
        with db.read() as s:
            if ids is None:
                return int(s.scalar(select(func.count()).select_from(Event)) or 0)
            found = 0
            for i in range(0, len(ids), 1000):
                found += int(s.scalar(select(func.count()).select_from(Event)
                                      .where(Event.id.in_(ids[i:i + 1000]))) or 0)
            return found
    finally:
        db.dispose()


def run(bundle: Path, url: str, port: int, clients: int, events: int, workers: int,
        users: list[int]) -> dict[str, Any]:
    proc = start_server(bundle, port, url, workers)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(proc, base)
        out = asyncio.run(load(base, clients, events, users))
    finally:
        proc.terminate()
        proc.wait(30)
    expected = clients * events
    found = count(url)
    return {"expected": expected, "acknowledged": len(out["acked"]), "found": found,
            "events_per_s": len(out["acked"]) / out["seconds"], "seconds": out["seconds"],
            "p50_ms": out["p50_ms"], "p99_ms": out["p99_ms"],
            "failures": len(out["failures"]), "failure_examples": out["failures"][:3],
            "clients": clients, "events_per_client": events, "workers": workers}


def sigkill(bundle: Path, url: str, port: int, clients: int, events: int,
            users: list[int]) -> dict[str, Any]:
    proc = start_server(bundle, port, url)
    base = f"http://127.0.0.1:{port}"
    wait_ready(proc, base)

    async def go() -> dict[str, Any]:
        out = await load(base, clients, events, users, stop_after=clients * events // 2)
        os.kill(proc.pid, signal.SIGKILL)            # mid-load, requests in flight
        await asyncio.gather(*out["tasks"], return_exceptions=True)
        return out

    out = asyncio.run(go())
    proc.wait(30)
    acked = sorted(set(out["acked"]))
    return {"acknowledged": len(acked), "found": count(url, acked),
            "rows_after_restart": count(url), "database": "sqlite",
            "killed_after_s": out["seconds"]}


def postgres_url(admin_url: str) -> tuple[str, Any]:
    """A fresh database on the server of `admin_url`, and a function that drops it."""
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    name = f"knobs_bench_{secrets.token_hex(4)}"
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')

    def drop() -> None:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE "{name}" WITH (FORCE)')
        admin.dispose()

    return make_url(admin_url).set(database=name).render_as_string(hide_password=False), drop


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", type=Path, default=REPO / "bundles" / "ml-latest-small")
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--events", type=int, default=200, help="per client")
    parser.add_argument("--workers", type=int, default=1,
                        help="server worker processes (knobs serve --workers)")
    parser.add_argument("--postgres", default=os.environ.get(
        "KNOBS_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/test"))
    parser.add_argument("--out", type=Path, default=REPO / "reports" / "durability")
    args = parser.parse_args()
    users = list(range(1, 51))
    report: dict[str, Any] = {"machine": {"platform": platform.platform(),
                                          "cpu_count": os.cpu_count(),
                                          "python": platform.python_version()}}
    with tempfile.TemporaryDirectory() as tmp:
        report["sqlite"] = run(args.bundle, migrated_url(f"sqlite:///{tmp}/a.db"), 8791,
                               args.clients, args.events, args.workers, users)
        report["sigkill"] = sigkill(args.bundle, migrated_url(f"sqlite:///{tmp}/b.db"), 8792,
                                    args.clients, args.events, users)
    url, drop = postgres_url(args.postgres)
    try:
        report["postgres"] = run(args.bundle, migrated_url(url), 8793, args.clients,
                                 args.events, args.workers, users)
    finally:
        drop()
    lines = ["# Durability of the event log", "",
             f"{args.clients} concurrent clients x {args.events} knob moves each over real "
             f"HTTP (`knobs serve`, {args.workers} worker(s), loopback, bundle "
             f"`{args.bundle.name}`), one knob_move event per answer; the answer comes "
             "after the commit. `python -m benchmarks.durability`.", "",
             "| database | expected | acknowledged | rows found | events/s | p50 ms | "
             "p99 ms | failures |", "|---|---|---|---|---|---|---|---|"]
    for name in ("sqlite", "postgres"):
        r = report[name]
        lines.append(f"| {name} | {r['expected']} | {r['acknowledged']} | {r['found']} | "
                     f"{r['events_per_s']:.0f} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | "
                     f"{r['failures']} |")
    k = report["sigkill"]
    lines += ["", f"SIGKILL half-way through the same load on SQLite (after "
              f"{k['killed_after_s']:.1f} s): {k['acknowledged']} events acknowledged, "
              f"{k['found']} of them in the database after the kill "
              f"({k['rows_after_restart']} rows in all: commits whose answer the kill cut "
              "off are there too).", "",
              f"Machine: {report['machine']['platform']}, "
              f"{report['machine']['cpu_count']} cores; the load generator shares them."]
    write_reports(args.out, report, lines)


if __name__ == "__main__":
    main()
