"""The `knobs` command line: train end to end on synthetic data (in process with tiny
models, and once as a real subprocess with the shipped defaults), the one-line errors."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
from click.testing import CliRunner

import models.config
from app.cli import SPLIT, main
from models.bundle import load_bundle
from models.concepts import KNOB_NEURONS
from models.config import ELSAConfig, MultVAEConfig, SAEConfig, TrainConfig
from models.data.datasets import load_dataset
from models.data.interactions import holdout_split
from models.evaluate import SPLIT_KINDS

REPO = Path(__file__).resolve().parents[2]
KNOBS = REPO / ".venv" / "bin" / "knobs"


def tiny_defaults(n_users: int, seed: int = 0) -> TrainConfig:
    return TrainConfig(elsa=ELSAConfig(d=16, lr=3e-2, batch_size=64, max_epochs=3, patience=2),
                       sae=SAEConfig(h=32, k=4, lr=1e-2, batch_size=128, max_epochs=2,
                                     patience=2),
                       seed=seed)


def test_train_writes_a_loadable_bundle(tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(models.config, "defaults_for", tiny_defaults)
    out = tmp_path / "bundles" / "synthetic"
    result = CliRunner().invoke(main, ["train", "--dataset", "synthetic", "--out", str(out),
                                       "--device", "cpu", "--seed", "2", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert f"bundle written to {out}" in result.stdout
    assert "test nDCG@20: ELSA" in result.stdout
    b = load_bundle(out)
    assert b.config["dataset"] == "synthetic"
    assert b.config["metadata_sources"] == ["synthetic"]
    assert b.train_config == tiny_defaults(0, seed=2)
    assert b.elsa.d == 16 and b.sae.h == 32
    q = b.quality
    assert {"split", "elsa", "elsa+sae", "train_seconds", "epochs"} <= set(q)
    assert 0.0 <= q["elsa"]["ndcg@20"] <= 1.0
    assert q["elsa+sae"]["l0"] <= 4


def test_steer_eval_writes_json_markdown_and_plot(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(models.config, "defaults_for", tiny_defaults)
    j, md, png = tmp_path / "r" / "s.json", tmp_path / "r" / "s.md", tmp_path / "p" / "s.png"
    result = CliRunner().invoke(main, ["steer-eval", "--dataset", "synthetic", "--folds", "2",
                                       "--json", str(j), "--md", str(md), "--plot", str(png),
                                       "--device", "cpu", "--no-progress"])
    assert result.exit_code == 0, result.output
    report = json.loads(j.read_text())
    assert set(report["curves"]) == {"unique", "best1", "best5", "lifts5", "lifts10",
                                     "lifts15", "lifts20", "rerank"}
    for curve in report["curves"].values():
        assert [p["alpha"] for p in curve] == [0.0, 0.1, 0.2, 0.3, 0.4, 0.5]
        assert all(0 <= p["personal"] <= 1 and 0 <= p["segment"] <= 1 for p in curve)
    assert set(report["curves_untrained"]) == {"best5", "lifts10"}
    # alpha 0 is the same unsteered ranking for every method
    assert len({(c[0]["personal"], c[0]["segment"]) for c in report["curves"].values()}) == 1
    for key in ("coverage", "median_precision", "entropy_decrease"):
        assert 0 <= report["labels"][key] <= 1
    assert report["protocol"]["steered_users"] > 0
    assert "# Steering on synthetic" in md.read_text()
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def tiny_evaluate_defaults(n_users: int, seed: int = 0) -> TrainConfig:
    return TrainConfig(elsa=tiny_defaults(n_users).elsa, sae=tiny_defaults(n_users).sae,
                       multvae=MultVAEConfig(d=8, lr=1e-2, batch_size=64, max_epochs=2,
                                             patience=2),
                       ease_l2=(10.0, 100.0), seed=seed)


def test_evaluate_with_split_holdout_tests_one_80_10_10_split(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(models.config, "defaults_for", tiny_evaluate_defaults)
    j, md = tmp_path / "q.json", tmp_path / "q.md"
    result = CliRunner().invoke(main, ["evaluate", "--dataset", "synthetic", "--split",
                                       "holdout", "--json", str(j), "--md", str(md),
                                       "--device", "cpu", "--seed", "1", "--no-progress"])
    assert result.exit_code == 0, result.output
    data = load_dataset("synthetic", seed=1).interactions
    n_test = len(holdout_split(data, 1).test.users)
    p = json.loads(j.read_text())["protocol"]
    assert p["split"] == "holdout" and p["folds"] == 1
    assert p["test_users"] == n_test < p["users"] == data.n_users
    assert f"one 80/10/10 user split ({n_test} test users)" in md.read_text()


def test_steer_eval_with_split_holdout(tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(models.config, "defaults_for", tiny_defaults)
    j, md, png = tmp_path / "s.json", tmp_path / "s.md", tmp_path / "s.png"
    result = CliRunner().invoke(main, ["steer-eval", "--dataset", "synthetic", "--split",
                                       "holdout", "--json", str(j), "--md", str(md), "--plot",
                                       str(png), "--device", "cpu", "--no-progress"])
    assert result.exit_code == 0, result.output
    n_test = len(holdout_split(load_dataset("synthetic").interactions, 0).test.users)
    p = json.loads(j.read_text())["protocol"]
    assert p["split"] == "holdout" and p["folds"] == 1 and p["test_users"] == n_test
    assert f"one 80/10/10 user split ({n_test} test users)" in md.read_text()


@pytest.mark.parametrize("command", ["evaluate", "steer-eval"])
def test_split_must_be_folds_or_holdout(tmp_path: Path, command: str) -> None:
    args = [command, "--dataset", "synthetic", "--json", str(tmp_path / "r.json"), "--md",
            str(tmp_path / "r.md")] + (["--plot", str(tmp_path / "r.png")]
                                       if command == "steer-eval" else [])
    result = CliRunner().invoke(main, args + ["--split", "kfold"])
    assert result.exit_code == 2
    assert "'kfold' is not one of 'folds', 'holdout'" in result.output
    result = CliRunner().invoke(main, args + ["--split", "holdout", "--folds", "3"])
    assert result.exit_code == 2
    assert result.stderr.strip() == ("knobs: error: --folds is for --split folds; --split "
                                     "holdout is one 80/10/10 user split (drop --folds)")
    assert not list(tmp_path.iterdir())


def test_split_choices_are_the_models_split_kinds() -> None:
    assert tuple(SPLIT.choices) == SPLIT_KINDS


def test_steer_eval_wants_a_png(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["steer-eval", "--dataset", "synthetic", "--json",
                                       str(tmp_path / "s.json"), "--md", str(tmp_path / "s.md"),
                                       "--plot", str(tmp_path / "s.svg")])
    assert result.exit_code == 2
    assert result.stderr.strip() == (f"knobs: error: --plot {tmp_path / 's.svg'}: the plot is "
                                     "written as PNG; name it *.png")
    assert not list(tmp_path.iterdir())


def test_inspect_shows_knobs_of_a_trained_bundle(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(models.config, "defaults_for", tiny_defaults)
    out = tmp_path / "b"
    assert CliRunner().invoke(main, ["train", "--dataset", "synthetic", "--out", str(out),
                                     "--device", "cpu", "--no-progress"]).exit_code == 0
    b = load_bundle(out)
    result = CliRunner().invoke(main, ["inspect", "--bundle", str(out), "--top", "3"])
    assert result.exit_code == 0, result.output
    shown = [int(line.split()[1].rstrip(":")) for line in result.stdout.splitlines()
             if line.startswith("neuron ")]
    density = b.concepts.density
    assert len(shown) == 3 and list(density[shown]) == sorted(density[shown], reverse=True)
    assert density[shown[0]] == density[b.concepts.live].max()
    assert "lifts most:" in result.stdout and "neighbours:" in result.stdout
    n = shown[0]
    result = CliRunner().invoke(main, ["inspect", "--bundle", str(out), "--neuron", str(n),
                                       "--json"])
    assert result.exit_code == 0, result.output
    (view,) = json.loads(result.stdout)
    assert view["neuron"] == n and view["label"] == b.concepts.label_name(n)
    assert len(view["lifts"]) == 10 and len(view["neighbours"]) == 5
    assert view["lifts"][0]["score"] >= view["lifts"][-1]["score"]
    assert n not in [x["neuron"] for x in view["neighbours"]]
    titles = set(b.catalog["title"])
    assert all(i["title"] in titles for i in view["activated_by"])
    result = CliRunner().invoke(main, ["inspect", "--bundle", str(out), "--neuron", "32"])
    assert result.exit_code == 2
    assert result.stderr.strip() == ("knobs: error: neuron 32 does not exist; this bundle "
                                     "has neurons 0..31")
    result = CliRunner().invoke(main, ["inspect", "--bundle", str(tmp_path / "none")])
    assert result.exit_code == 2 and "no bundle folder there" in result.stderr


def test_serve_refuses_a_missing_bundle_in_one_line(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["serve", "--bundle", str(tmp_path / "none"),
                                       "--device", "cpu"])
    assert result.exit_code == 2
    assert result.stderr.strip() == (f"knobs: error: cannot serve {tmp_path / 'none'}: "
                                     f"{tmp_path / 'none'}: no bundle folder there (train "
                                     "one with `knobs train`)")


def test_serve_refuses_an_unmigrated_database_in_one_line(tmp_path: Path,
                                                          bundle_dir: Path) -> None:
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    result = CliRunner().invoke(main, ["serve", "--bundle", str(bundle_dir), "--device", "cpu"],
                                env={"KNOBS_DATABASE_URL": url})
    assert result.exit_code == 2
    assert "is at revision none, the code needs 0001: run `alembic upgrade head`" \
        in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_data_prints_the_dataset_size() -> None:
    result = CliRunner().invoke(main, ["data", "--dataset", "synthetic"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    assert info["dataset"] == "synthetic"
    assert info["users"] > 0 and info["items"] > 0 and info["positives"] > 0
    assert len(info["fingerprint"]) == 64


def test_unknown_dataset_is_a_usage_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["train", "--dataset", "nope", "--out", str(tmp_path)])
    assert result.exit_code == 2
    assert "synthetic" in result.output


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU error")
def test_train_on_cuda_without_a_gpu_fails_in_one_line(tmp_path: Path) -> None:
    out = tmp_path / "b"
    result = CliRunner().invoke(main, ["train", "--dataset", "synthetic", "--out", str(out),
                                       "--device", "cuda", "--no-progress"])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("knobs: error:") and "cuda" in lines[0].lower()
    assert "Traceback" not in result.output
    assert not out.exists()


def test_help_lists_the_commands() -> None:
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    for command in ("data", "train", "evaluate", "steer-eval", "inspect", "serve"):
        assert command in result.stdout


@pytest.mark.slow
@pytest.mark.realdata
def test_knobs_train_on_ml_latest_small(tmp_path: Path, real_data_dir: Path) -> None:
    """The real console script with the shipped defaults on the real data, as `make demo`
    runs it: the bundle loads, and its held-out numbers are those of a working model."""
    if not KNOBS.exists():
        pytest.skip(f"{KNOBS} not installed (make install)")
    out = tmp_path / "bundle"
    proc = subprocess.run(
        [str(KNOBS), "train", "--dataset", "ml-latest-small", "--out", str(out),
         "--device", "cpu", "--no-progress"],
        capture_output=True, text=True, timeout=900, cwd=tmp_path,
        env={"PATH": str(Path(sys.executable).parent), "HOME": str(tmp_path),
             "KNOBS_DATA_DIR": str(real_data_dir), "KNOBS_CACHE_DIR": str(tmp_path / "c")},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    b = load_bundle(out)
    assert b.config["dataset"] == "ml-latest-small"
    assert (b.interactions.n_users, b.interactions.n_items) == (603, 6298)
    q = b.quality
    assert q["split"] == {"train": 483, "validation": 60, "test": 60, "seed": 0}
    # Popularity scores about 0.15 nDCG@20 here, EASE about 0.30 (reports/quality.md).
    assert q["elsa"]["ndcg@20"] > 0.2
    assert q["elsa+sae"]["ndcg@20"] > 0.18
    assert q["elsa+sae"]["l0"] <= b.sae.k  # type: ignore[attr-defined]
    assert q["elsa+sae"]["dead_fraction"] < 0.5
    toy = b.catalog.set_index("item").loc[1]
    assert toy["title"] == "Toy Story" and toy["directors"] == ["John Lasseter"]
    # labelled knobs: every live neuron has a label; the "animation" concept knob (what
    # "add a knob" moves) lifts animated films, and so, far above their share of the
    # catalogue (7%), do neurons labelled "animation" (their label is read from the items
    # that activate them, not from what they lift: 8-10 of 20 animated for the best of
    # them in the bundles trained so far; a random neuron lifts about 1)
    c = b.concepts
    assert (c.label[c.live] >= 0).all() and q["labels"]["live"] == int(c.live.sum())
    assert c.kinds[c.concept("alfred hitchcock")] == "director"
    assert c.kinds[c.concept("tom hanks")] == "tag"  # directed 1 film, tagged on many
    anim = c.concept("animation")
    genres = b.catalog["genres"]
    rows = b.sae.W_dec @ b.elsa.A.T

    def animated(row: torch.Tensor) -> int:
        return sum("Animation" in genres[int(i)] for i in row.topk(20).indices)

    knob = torch.as_tensor(c.neurons_for(anim, "lifts", KNOB_NEURONS))
    assert animated(rows[knob].mean(dim=0)) >= 15
    labelled = np.flatnonzero(c.label == anim)
    assert len(labelled) > 0
    lifted = [animated(rows[n]) for n in labelled]
    assert max(lifted) >= 6, lifted


def test_the_container_pins_the_same_torch_and_runs_migrations_first() -> None:
    repo = Path(__file__).resolve().parents[2]
    docker = (repo / "Dockerfile").read_text()
    pin = re.search(r'"torch==([\d.]+)"', (repo / "pyproject.toml").read_text())
    assert pin and f'"torch=={pin.group(1)}"' in docker
    assert re.search(r"^USER \d+:\d+$", docker, re.M) and "HEALTHCHECK" in docker
    assert 'VOLUME ["/data", "/bundle"]' in docker
    entry = (repo / "docker-entrypoint.sh").read_text().splitlines()
    commands = [line for line in entry if line and not line.startswith(("#", "set "))]
    assert commands[0] == "alembic upgrade head" and commands[1].startswith("exec uvicorn")


def spawned_workers(pid: int) -> set[int]:
    """Children of `pid` started by multiprocessing's spawn (uvicorn's workers), from
    /proc; spawn's resource tracker, also a child, does not count."""
    out = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmdline = (stat.parent / "cmdline").read_bytes()
        except OSError:
            continue
        if int(fields[1]) == pid and b"spawn_main" in cmdline:
            out.add(int(stat.parent.name))
    return out


def _serve(bundle_dir: Path, url: str, port: int, *extra: str) -> subprocess.Popen[bytes]:
    knobs = Path(sys.executable).with_name("knobs")
    return subprocess.Popen([str(knobs), "serve", "--bundle", str(bundle_dir), "--device",
                             "cpu", "--port", str(port), *extra],
                            env={**os.environ, "KNOBS_DATABASE_URL": url},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _wait_for_workers(proc: subprocess.Popen[bytes], port: int, n: int,
                      timeout: float = 60) -> set[int]:
    """Until `n` spawned workers exist and the port answers; their pids."""
    deadline, pids = time.time() + timeout, set()
    while len(pids) < n and time.time() < deadline:
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}") as c:
                for _ in range(20):      # new connections land on either worker
                    r = c.get("/api/v1/users", params={"limit": 1},
                              headers={"Connection": "close"})
                    assert r.status_code == 200
        except httpx.HTTPError:
            time.sleep(0.3)
            continue
        pids = spawned_workers(proc.pid)
    return pids


@pytest.mark.parametrize("workers", ["1", "2"])
@pytest.mark.parametrize("loop", [None, "uvloop"])
def test_serve_hands_its_event_loop_to_uvicorn(bundle_dir: Path, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch,
                                               workers: str, loop: str | None) -> None:
    """`--loop` (default asyncio: README, serving performance) reaches uvicorn whether one
    process serves or several workers do."""
    import uvicorn

    import app.workers
    from tests.app.conftest import migrated

    got: dict[str, object] = {}
    monkeypatch.setattr(uvicorn, "run", lambda *a, **kw: got.update(kw))
    monkeypatch.setattr(app.workers, "run_workers",
                        lambda host, port, n, level, lp: got.update(loop=lp, workers=n))
    url = migrated(f"sqlite:///{tmp_path / 'knobs.db'}")
    args = ["serve", "--bundle", str(bundle_dir), "--device", "cpu", "--workers", workers]
    result = CliRunner().invoke(main, args + (["--loop", loop] if loop else []),
                                env={"KNOBS_DATABASE_URL": url})
    assert result.exit_code == 0, result.output
    assert got["loop"] == (loop or "asyncio")
    assert got.get("workers", 1) == int(workers)
    if workers == "1":                          # uvicorn's own httptools protocol
        assert got["http"] == "httptools"
    bad = CliRunner().invoke(main, args + ["--loop", "tokio"])
    assert bad.exit_code == 2 and "tokio" in bad.output


def test_serve_with_two_workers(bundle_dir: Path, tmp_path: Path) -> None:
    """Two processes behind one port, each with its own model and socket, one database;
    a second server on the same port is refused, not quietly let in beside it."""
    from tests.app.conftest import free_port, migrated

    url = migrated(f"sqlite:///{tmp_path / 'knobs.db'}")
    port = free_port()
    proc = _serve(bundle_dir, url, port, "--workers", "2")
    try:
        deadline = time.time() + 60      # the workers exist, maybe still loading...
        while not spawned_workers(proc.pid) and time.time() < deadline:
            time.sleep(0.05)
        second = _serve(bundle_dir, url, port, "--workers", "2")    # ...: refused anyway
        out, _ = second.communicate(timeout=60)
        assert second.returncode == 2
        assert f"cannot listen on 127.0.0.1:{port}" in out.decode()
        assert len(_wait_for_workers(proc, port, 2)) >= 2, "did not start two workers"
    finally:
        proc.terminate()
        proc.wait(30)
    assert proc.returncode == 0 and not spawned_workers(proc.pid)


def listening(port: int) -> int:
    """Sockets listening on 127.0.0.1:`port`, from /proc/net/tcp (state 0A)."""
    local = f"0100007F:{port:04X}"
    rows = Path("/proc/net/tcp").read_text().splitlines()[1:]
    return sum(1 for r in rows if r.split()[1] == local and r.split()[3] == "0A")


def test_a_worker_that_dies_is_replaced(bundle_dir: Path, tmp_path: Path) -> None:
    from tests.app.conftest import free_port, migrated

    url = migrated(f"sqlite:///{tmp_path / 'knobs.db'}")
    port = free_port()
    script = f"import app.workers as w; w.run_workers('127.0.0.1', {port}, 2, 'warning')"
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=REPO, env={
        **os.environ, "KNOBS_DATABASE_URL": url, "KNOBS_BUNDLE": str(bundle_dir),
        "KNOBS_DEVICE": "cpu"}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        first = _wait_for_workers(proc, port, 2)
        assert len(first) == 2
        # both must be serving (a worker that dies before it serves is a failed start,
        # which stops the server): each listens once its app has started, and tells
        # the parent right after
        deadline = time.time() + 60
        while listening(port) < 2 and time.time() < deadline:
            time.sleep(0.2)
        assert listening(port) == 2
        time.sleep(1.0)
        os.kill(min(first), 9)
        deadline = time.time() + 60
        while time.time() < deadline:
            now = spawned_workers(proc.pid)
            if len(now) == 2 and min(first) not in now:
                break
            time.sleep(0.2)
        assert len(now) == 2 and min(first) not in now, "the dead worker was not replaced"
        deadline = time.time() + 60      # the replacement listens once its model is loaded
        while listening(port) < 2 and time.time() < deadline:
            time.sleep(0.2)
        assert listening(port) == 2, "the replacement does not listen"
        assert len(_wait_for_workers(proc, port, 2)) == 2       # and the port serves
        os.kill(proc.pid, 9)             # the parent killed outright: no worker outlives it
        deadline = time.time() + 30
        while time.time() < deadline and any(Path(f"/proc/{p}").exists() for p in now):
            time.sleep(0.2)
        assert not any(Path(f"/proc/{p}/cmdline").exists()
                       and b"spawn_main" in Path(f"/proc/{p}/cmdline").read_bytes()
                       for p in now), "workers outlived their parent"
    finally:
        proc.terminate()
        proc.wait(30)


def test_a_worker_that_fails_to_start_stops_the_server(bundle_dir: Path,
                                                       tmp_path: Path) -> None:
    """`knobs serve` checks the bundle and database in the parent, but a worker can still
    fail to start (here run_workers is called alone, with no database): the workers stop
    and run_workers raises WorkerError naming the worker (which `knobs serve` prints as
    one line) instead of restarting it forever."""
    from tests.app.conftest import free_port

    port = free_port()
    script = ("import app.workers as w; "
              f"w.run_workers('127.0.0.1', {port}, 2, 'warning')")
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, env={
        **os.environ, "KNOBS_DATABASE_URL": f"sqlite:///{tmp_path / 'missing' / 'k.db'}",
        "KNOBS_BUNDLE": str(bundle_dir), "KNOBS_DEVICE": "cpu"},
        capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert "WorkerError" in proc.stderr and "while starting" in proc.stderr


def test_train_on_books_with_to_read_marks(tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from models.data.synthetic import write_goodbooks

    monkeypatch.setattr(models.config, "defaults_for", tiny_defaults)
    write_goodbooks(tmp_path / "data" / "goodbooks-10k")
    monkeypatch.setenv("KNOBS_DATA_DIR", str(tmp_path / "data"))
    plain = CliRunner().invoke(main, ["data", "--dataset", "goodbooks-10k"])
    marked = CliRunner().invoke(main, ["data", "--dataset", "goodbooks-10k", "--to-read"])
    assert plain.exit_code == marked.exit_code == 0, plain.output + marked.output
    assert json.loads(marked.stdout)["positives"] > json.loads(plain.stdout)["positives"]
    out = tmp_path / "books"
    result = CliRunner().invoke(main, ["train", "--dataset", "goodbooks-10k", "--out",
                                       str(out), "--device", "cpu", "--no-progress",
                                       "--to-read"])
    assert result.exit_code == 0, result.output
    b = load_bundle(out)
    assert "goodbooks-10k to_read as positives" in b.config["metadata_sources"]
    assert b.catalog["authors"].iloc[0][0].startswith("Author ")


def test_to_read_is_refused_for_films(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["train", "--dataset", "synthetic", "--out",
                                       str(tmp_path / "b"), "--to-read", "--no-progress"])
    assert result.exit_code == 2
    assert "'to read' marks exist only in goodbooks-10k" in result.output
    assert not (tmp_path / "b").exists()
