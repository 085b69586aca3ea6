"""Serving performance (issue 4): in-process knob-change latency against the naive full
forward and the floor, on the demo bundle and on a synthetic ML-25M-sized model; HTTP
latency and throughput of the JSON API served by `knobs serve --workers 2` (uvicorn
processes) on loopback at 1, 8 and 64 concurrent clients, and the same load against the
machine's HTTP floor (`benchmarks/http_floor.py`: the same server set-up answering a canned
body). Writes reports/performance.{json,md}.

    .venv/bin/python -m benchmarks.performance [--bundle bundles/ml-latest-small]

Knob change (one thread, the user's state and rows cached as a session has them): a
slider moves one of five knobs (a concept knob of 10 neurons among them) and the top 20
is recomputed: `steered_scores` + top-20 with the inputs set to -inf in place.
Naive: the same change by a full forward from the user's history: ELSA encoder, SAE
encoder, `steer`, SAE decoder, ELSA decoder, top-20.
Floor: one pass over the item scores (a fused add) + top-20 the same way, the least any
method does.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import numpy as np
import torch

from app.workers import hold_port
from benchmarks.common import REPO, serve, write_reports
from models.bundle import load_bundle
from models.concepts import KNOB_NEURONS
from models.elsa import ELSA
from models.evaluate import machine_info
from models.metrics import top_n, top_n_owned
from models.sae import SparseAutoencoder, TopKSAE
from models.steering import (
    Knob,
    knob_row,
    latent_rows,
    score_basis,
    steer,
    steered_scores,
    user_scores,
)


def _pct(samples: list[float], q: float) -> float:
    s = sorted(samples)
    return 1e3 * s[min(len(s) - 1, int(q * len(s)))]


def knob_change(elsa: ELSA, sae: SparseAutoencoder, histories: list[np.ndarray],
                changes: int, rng: np.random.Generator) -> dict[str, float]:
    """p50 / p99 in ms of the cached affine update; p50 of the naive forward (every tenth
    change) and of the floor; `changes`: the number of changes timed over all users."""
    fast: list[float] = []
    naive: list[float] = []
    floor: list[float] = []
    basis = score_basis(elsa, sae)
    n_items = elsa.n_items
    with torch.no_grad():
        for items in histories:
            x = torch.zeros(1, n_items)
            x[0, torch.from_numpy(items)] = 1.0
            mask = x > 0
            taken = torch.from_numpy(np.sort(items)).long()
            code, mean, std = sae.encode(elsa.encode(x))
            user = user_scores(elsa, sae, basis, code[0], mean, std)
            active = sorted(user.active)
            concept = tuple(int(n) for n in rng.choice(sae.h, KNOB_NEURONS, replace=False))
            knob_neurons = [(int(active[0]),), (int(active[-1]),),
                            (int(rng.integers(sae.h)),), (int(rng.integers(sae.h)),), concept]
            rows_of = {ns: knob_row(latent_rows(elsa, sae, torch.tensor(ns)))
                       for ns in knob_neurons}
            active_rows = latent_rows(elsa, sae, torch.tensor(active))
            pos = {n: i for i, n in enumerate(active)}

            def neuron_row(n: int, r: torch.Tensor = active_rows,
                           at: dict[int, int] = pos) -> torch.Tensor:
                return r[at[n]]

            strengths = [0.1, -0.3, 0.2, 0.0, 0.3]
            for _ in range(changes):
                strengths[int(rng.integers(5))] = float(rng.uniform(-0.3, 0.3))
                knobs = [Knob(ns, s) for ns, s in zip(knob_neurons, strengths, strict=True)
                         if s != 0.0]
                t0 = time.perf_counter()
                knob_rows = [rows_of[k.neurons] for k in knobs]
                scores = steered_scores(user, knobs, knob_rows, neuron_row)
                top_n_owned(scores, 20, taken)
                fast.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                top_n_owned(torch.add(user.offset, user.latent, alpha=0.5), 20, taken)
                floor.append(time.perf_counter() - t0)
                if len(fast) % 10 == 0:          # the same change by a full forward
                    t0 = time.perf_counter()
                    c, m, s = sae.encode(elsa.encode(x))
                    z = steer(c[0], knobs).code
                    out = elsa.decode(sae.decode(z[None], m, s))
                    top_n(out, 20, exclude=mask)
                    naive.append(time.perf_counter() - t0)
    return {"p50": _pct(fast, 0.5), "p99": _pct(fast, 0.99), "naive_p50": _pct(naive, 0.5),
            "floor_p50": _pct(floor, 0.5), "changes": len(fast)}


def synthetic_25m(rng: np.random.Generator) -> tuple[ELSA, TopKSAE, list[np.ndarray]]:
    """Random weights at ML-25M scale: 40,857 items, d = 1024, h = 8192, k = 16."""
    g = torch.Generator().manual_seed(0)
    elsa = ELSA(40_857, 1024, g).eval()
    sae = TopKSAE(1024, 8192, 16, g).eval()
    histories = [rng.choice(40_857, int(rng.integers(20, 300)), replace=False)
                 for _ in range(30)]
    return elsa, sae, histories


Request = tuple[str, dict[str, str], str]
"""(path, headers, body) of a POST."""


async def _http_load(base: str, requests: list[Request], clients: int,
                     seconds: float) -> dict[str, Any]:
    latencies: list[float] = []
    errors = 0
    stop = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=30) as client:

        async def worker(w: int) -> None:
            nonlocal errors
            i = w
            while time.perf_counter() < stop:
                path, headers, body = requests[i % len(requests)]
                t0 = time.perf_counter()
                r = await client.post(path, content=body, headers=headers)
                latencies.append(time.perf_counter() - t0)
                errors += r.status_code != 200
                i += clients

        started = time.perf_counter()
        await asyncio.gather(*(worker(w) for w in range(clients)))
        elapsed = time.perf_counter() - started
    return {"p50_ms": _pct(latencies, 0.5), "p99_ms": _pct(latencies, 0.99),
            "rps": len(latencies) / elapsed, "requests": len(latencies), "errors": errors,
            "client": "httpx"}


WRK_SCRIPT = """
requests = {%s}
counter = 0
request = function()
  counter = counter + 1
  local r = requests[(counter %% #requests) + 1]
  return wrk.format("POST", r[1], r[2], r[3])
end
done = function(summary, latency, requests)
  io.write(string.format("KNOBS %%d %%d %%f %%f %%d\\n", summary.requests, summary.duration,
                         latency:percentile(50), latency:percentile(99),
                         summary.errors.status + summary.errors.connect + summary.errors.read
                         + summary.errors.write + summary.errors.timeout))
end
"""


def _lua(request: Request) -> str:
    path, headers, body = request
    assert "]]" not in body + path and all("]]" not in k + v for k, v in headers.items())
    table = ", ".join(f"[ [[{k}]] ] = [[{v}]]" for k, v in headers.items())
    return f"{{ [[{path}]], {{ {table} }}, [[{body}]] }}"


def _wrk(base: str, requests: list[Request], clients: int, seconds: float
         ) -> dict[str, Any]:
    """The load from wrk (Debian's package), a C client that leaves the cores to the
    server: p50 / p99 latency and requests/s."""
    lua = WRK_SCRIPT % ", ".join(_lua(r) for r in requests)
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(lua)
    try:
        cmd = [shutil.which("wrk") or "wrk", "-t1", f"-c{clients}", f"-d{int(seconds)}s",
               "-s", f.name, base]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    finally:
        os.unlink(f.name)
    line = next(ln for ln in out.splitlines() if ln.startswith("KNOBS "))
    n, duration_us, p50, p99, errors = line.split()[1:]
    return {"p50_ms": float(p50) / 1e3, "p99_ms": float(p99) / 1e3,
            "rps": int(n) / (int(duration_us) / 1e6), "requests": int(n),
            "errors": int(errors), "client": "wrk"}


def _levels(base: str, requests: list[Request], seconds: float, client: str = "wrk"
            ) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for c in (1, 8, 64):
        spread: list[int] = []

        def sample(into: list[int] = spread) -> None:
            time.sleep(seconds / 2)
            into.extend(_connections(base))

        probe = threading.Thread(target=sample)
        probe.start()
        out[f"c{c}"] = (_wrk(base, requests, c, seconds) if client == "wrk"
                        else asyncio.run(_http_load(base, requests, c, seconds)))
        probe.join()
        out[f"c{c}"]["connections_per_worker"] = spread
    return out


def _sockets(base: str, state: str) -> list[str]:
    """`ss` lines of the server's TCP sockets on its port in `state`."""
    ss = shutil.which("ss")
    if not ss:
        return []
    port = base.rsplit(":", 1)[1]
    return subprocess.run([ss, "-tnpH", "state", state, "sport", f"= :{port}"],
                          capture_output=True, text=True).stdout.splitlines()


def _connections(base: str) -> list[int]:
    """Established connections held by each server process, most first (from `ss`)."""
    pids = [m for line in _sockets(base, "established")
            for m in re.findall(r"pid=(\d+)", line)[:1]]
    return sorted(Counter(pids).values(), reverse=True)


def _wait_listening(base: str, workers: int, timeout: float = 120.0) -> None:
    """Until `workers` processes listen on the port (each worker binds its own socket
    once its model is loaded); without `ss`, a fixed wait."""
    if not shutil.which("ss"):
        time.sleep(15)
        return
    deadline = time.time() + timeout
    while len(_sockets(base, "listening")) < workers:
        if time.time() > deadline:
            raise RuntimeError(f"fewer than {workers} workers listen after {timeout:.0f} s")
        time.sleep(0.2)


def _html_requests(base: str, users: list[int], rng: np.random.Generator) -> list[Request]:
    """Slider moves as the steer page's htmx form posts them: one session per user (one
    visitor), its full knob state with the first knob moved; each answer is the #recs
    fragment, after the knob_move event is committed."""
    out = []
    with httpx.Client(base_url=base) as c:
        for u in users:
            s = c.post("/api/v1/sessions", json={"user": u}).json()
            page = c.get(f"/sessions/{s['id']}").text
            csrf = re.findall(r'name="csrf" value="([^"]+)"', page)[0]
            cookie = f"knobs_visitor={c.cookies['knobs_visitor']}"
            keys = [k["key"] for k in s["knobs"]]
            for _ in range(4):
                alphas = [float(rng.uniform(0, 0.3))] + [0.0] * (len(keys) - 1)
                body = urlencode([("csrf", csrf), ("full", "1")] + [
                    x for k, a in zip(keys, alphas, strict=True)
                    for x in (("kid", k), ("ka", f"{a:.2f}"), ("kd", "more"))])
                out.append((f"/sessions/{s['id']}/knobs", {
                    "Content-Type": "application/x-www-form-urlencoded", "Cookie": cookie,
                    "HX-Request": "true", "HX-Target": "recs"}, body))
    return out


def http_benchmark(bundle: Path, seconds: float, workers: int, loop: str = "asyncio",
                   client: str = "wrk") -> dict[str, Any]:
    """`knobs serve --workers N` on loopback: knob changes for warm users through the
    JSON API, then as the steer page's htmx slider posts (a session write each)."""
    with serve(bundle, 8799, workers=workers, loop=loop) as base:
        _wait_listening(base, workers)
        users = [u["id"] for u in httpx.get(f"{base}/api/v1/users",
                                            params={"limit": 50}).json()]
        rng = np.random.default_rng(1)
        bodies = [{"user": u, "n": 20, "knobs": [
            {"concept": c, "alpha": float(rng.uniform(0, 0.3))}
            for c in ("drama", "comedy")]} for u in users for _ in range(4)]
        json_requests = [("/api/v1/recommendations", {"Content-Type": "application/json"},
                          json.dumps(b)) for b in bodies]
        html_requests = _html_requests(base, users, rng)
        # warm every worker (user states and rows): a new connection per request, which
        # the kernel hands to either worker
        for _ in range(2 * workers):
            for path, headers, body in json_requests + html_requests:
                httpx.post(f"{base}{path}", content=body,
                           headers={**headers, "Connection": "close"}).raise_for_status()
        size = len(httpx.post(f"{base}{json_requests[0][0]}", content=json_requests[0][2],
                              headers=json_requests[0][1]).content)
        measured = {"json": _levels(base, json_requests, seconds, client),
                    "html": _levels(base, html_requests, seconds, client)}
    measured["floor"] = {"bytes": size,
                         **floor_levels(json_requests, size, seconds, workers, loop,
                                                      client)}
    return measured


def floor_levels(requests: list[Request], size: int, seconds: float, workers: int,
                 loop: str = "asyncio", client: str = "wrk") -> dict[str, Any]:
    """The same load against `benchmarks.http_floor`: `workers` uvicorn processes set up
    as the app's, answering a canned body of `size` bytes with no work, on a port checked
    free and held for them (no stale floor server can share it); they die with us."""
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    hold = hold_port("127.0.0.1", port)
    procs = [subprocess.Popen([sys.executable, "-m", "benchmarks.http_floor", "--port",
                               str(port), "--bytes", str(size), "--loop", loop,
                               "--parent", str(os.getpid())],
                              cwd=REPO)
             for _ in range(workers)]
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 60
        while True:
            dead = [p.returncode for p in procs if p.poll() is not None]
            if dead:
                raise RuntimeError(f"a floor server exited with status {dead[0]}")
            if not shutil.which("ss") or len(_sockets(base, "listening")) >= workers:
                try:
                    httpx.post(base, content=b"{}").raise_for_status()
                    break
                except httpx.HTTPError:
                    pass
            if time.time() > deadline:
                raise RuntimeError(f"the floor servers do not answer on {base} after 60 s")
            time.sleep(0.2)
        return _levels(base, requests, seconds, client)
    finally:
        hold.close()
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bundle", type=Path, default=REPO / "bundles" / "ml-latest-small")
    parser.add_argument("--changes", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=10.0, help="per HTTP level")
    parser.add_argument("--workers", type=int, default=2, choices=range(1, 17),
                        metavar="1..16",
                        help="server worker processes (one per core here)")
    parser.add_argument("--loop", default="asyncio", choices=["asyncio", "uvloop", "auto"],
                        help="the servers' event loop (`knobs serve --loop`)")
    parser.add_argument("--client", default="wrk", choices=["wrk", "httpx"],
                        help="the HTTP load: wrk (Debian's package; `make perf` installs it) "
                             "or httpx, a Python client that competes with the servers for "
                             "the cores, so that its numbers measure mostly itself")
    parser.add_argument("--out", type=Path, default=REPO / "reports" / "performance")
    args = parser.parse_args()
    if args.client == "wrk" and not shutil.which("wrk"):
        parser.error("wrk is not installed: `make perf` installs it (apt-get install wrk), "
                     "or pass --client httpx for a Python client's (much slower) load")
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    b = load_bundle(args.bundle)
    users = rng.choice(b.interactions.n_users, 30, replace=False)
    histories = [b.interactions.matrix[int(u)].indices for u in users]
    knob = {"ml-latest-small": knob_change(b.elsa, b.sae, histories, args.changes, rng)}
    elsa, sae, hist = synthetic_25m(rng)
    knob["ml-25m-synthetic"] = knob_change(elsa, sae, hist, args.changes, rng)
    torch.set_num_threads(int(os.environ.get("KNOBS_THREADS", "2")))
    measured = http_benchmark(args.bundle, args.seconds, args.workers, args.loop, args.client)
    http = {"workers": args.workers, "loop": args.loop, **measured["json"]}
    report = {"knob_change_ms": knob, "http": http,
              "http_html": {"workers": args.workers, "loop": args.loop, **measured["html"]},
              "http_floor": {"workers": args.workers, "loop": args.loop,
                             **measured["floor"]},
              "targets": {"knob_p50_ms": {"ml-latest-small": 0.2, "ml-25m-synthetic": 0.5},
                          "speedup_vs_naive": 40, "within_floor": 3,
                          "http_c64_p99_ms": 30, "http_rps": 1000},
              "machine": machine_info(torch.device("cpu"))}
    m = report["machine"]
    lines = ["# Serving performance", "",
             f"Machine: {m['cpu']}, {m['cpu_count']} CPUs, Python {m['python']}, torch "
             f"{m['torch']}.", "",
             "Knob change, in process, one thread (ms):", "",
             "| model | p50 | p99 | naive full forward p50 | x faster | floor p50 | x floor |",
             "|---|---|---|---|---|---|---|"]
    for name, k in knob.items():
        lines.append(f"| {name} | {k['p50']:.3f} | {k['p99']:.3f} | {k['naive_p50']:.2f} | "
                     f"{k['naive_p50'] / k['p50']:.0f} | {k['floor_p50']:.3f} | "
                     f"{k['p50'] / k['floor_p50']:.1f} |")
    client = "wrk" if args.client == "wrk" else "httpx (asyncio)"
    lines += ["", f"JSON API, `knobs serve --workers {args.workers} --loop {args.loop}` on "
              f"loopback (uvicorn processes with a socket each, event loop {args.loop}, "
              "httptools, one socket write per answer; the warm knob changes a worker "
              "has ready in one event-loop round batched), knob changes for 50 warm "
              f"users; load from {client} on the same 2 cores; connections per worker "
              "sampled mid-run:", "",
              "| clients | p50 ms | p99 ms | requests/s | errors | connections per worker |",
              "|---|---|---|---|---|---|"]
    for c, h in measured["json"].items():
        lines.append(f"| {c[1:]} | {h['p50_ms']:.1f} | {h['p99_ms']:.1f} | {h['rps']:.0f} | "
                     f"{h['errors']} | {' / '.join(map(str, h['connections_per_worker']))} |")
    floor = measured["floor"]
    lines += ["", f"The machine's HTTP floor under the same load: {args.workers} uvicorn "
              "processes set up as the app's, answering every request with a canned "
              f"{floor['bytes']}-byte JSON body (the size of the answers above) and doing no "
              "work (`benchmarks/http_floor.py`). Where the app's p99 at 64 clients stands "
              "against this is what the machine leaves it:", "",
              "| clients | p50 ms | p99 ms | requests/s | errors | connections per worker |",
              "|---|---|---|---|---|---|"]
    for c, h in floor.items():
        if c.startswith("c"):
            lines.append(f"| {c[1:]} | {h['p50_ms']:.1f} | {h['p99_ms']:.1f} | "
                         f"{h['rps']:.0f} | {h['errors']} | "
                         f"{' / '.join(map(str, h['connections_per_worker']))} |")
    lines += ["", "The HTML fragment path beside it: the steer page's htmx slider post "
              "(`POST /sessions/{id}/knobs`, the session's full knob state as a form), which "
              "saves the knobs, commits a knob_move event to SQLite and answers the #recs "
              "fragment:", "",
              "| clients | p50 ms | p99 ms | requests/s | errors | connections per worker |",
              "|---|---|---|---|---|---|"]
    for c, h in measured["html"].items():
        lines.append(f"| {c[1:]} | {h['p50_ms']:.1f} | {h['p99_ms']:.1f} | {h['rps']:.0f} | "
                     f"{h['errors']} | {' / '.join(map(str, h['connections_per_worker']))} |")
    flags = "" if args.client == "wrk" else f" --client {args.client}"
    lines += ["", f"`.venv/bin/python -m benchmarks.performance{flags}`"]
    write_reports(args.out, report, lines)


if __name__ == "__main__":
    main()
