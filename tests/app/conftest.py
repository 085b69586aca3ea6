"""Fixtures of the web-app tests: one small bundle trained on the planted synthetic data,
shared by the API, page and browser tests, and one of the same data as goodbooks-10k books
(with authors)."""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import torch
from alembic import command
from sqlalchemy import create_engine
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from app.db.session import alembic_config
from app.settings import Settings
from models.bundle import save_bundle
from models.config import ELSAConfig, SAEConfig, TrainConfig
from models.data.datasets import Dataset, load_dataset
from models.data.synthetic import write_goodbooks
from models.pipeline import label_knobs, train_models

CFG = TrainConfig(elsa=ELSAConfig(d=24, lr=3e-2, batch_size=32, max_epochs=10, patience=4),
                  sae=SAEConfig(h=48, k=6, lr=1e-2, batch_size=64, max_epochs=8, patience=4,
                                subsamples_per_user=4, item_onehots=True, init_b_dec=True,
                                refine_steps=20, refine_candidates=12), seed=1)


def tiny_bundle(ds: Dataset, out: Path) -> Path:
    """A bundle of `ds` trained with CFG on the CPU, saved at `out`."""
    dev = torch.device("cpu")
    trained = train_models(ds.interactions, CFG, dev, progress=False)
    concepts, settings = label_knobs(trained.elsa, trained.sae, ds.interactions, ds.catalog,
                                     ds.tag_events, dev)
    save_bundle(out, dataset=ds.name, elsa=trained.elsa, sae=trained.sae,
                train_config=CFG, data=ds.interactions, catalog=ds.catalog,
                quality=trained.quality, concepts=concepts, concept_settings=settings)
    return out


@pytest.fixture(scope="session")
def bundle_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_bundle(load_dataset("synthetic"), tmp_path_factory.mktemp("bundle") / "synthetic")


@pytest.fixture(scope="session")
def books_bundle_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The planted synthetic data written as goodbooks-10k's files (books with authors,
    genre shelves) and loaded as that dataset: a bundle whose pages say "books"."""
    root = write_goodbooks(tmp_path_factory.mktemp("data") / "goodbooks-10k")
    ds = load_dataset("goodbooks-10k", data_dir=root.parent)
    return tiny_bundle(ds, tmp_path_factory.mktemp("bundle") / "goodbooks-10k")


def migrated(url: str) -> str:
    """`url` after `alembic upgrade head`."""
    command.upgrade(alembic_config(url), "head")
    return url


@pytest.fixture(scope="module")
def db_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A fresh migrated SQLite database for the module's app."""
    return migrated(f"sqlite:///{tmp_path_factory.mktemp('db') / 'knobs.db'}")


@pytest.fixture(scope="module")
def settings(bundle_dir: Path, db_url: str) -> Settings:
    return Settings(bundle=bundle_dir, device="cpu", database_url=db_url)


POSTGRES = os.environ.get("KNOBS_TEST_POSTGRES",
                          "postgresql+psycopg://postgres@127.0.0.1:5432/test")
"""A PostgreSQL server where tests may create and drop their own databases."""
REPO = Path(__file__).resolve().parents[2]


@contextmanager
def postgres_database() -> Iterator[str]:
    """The URL of a new, empty database on POSTGRES, dropped afterwards; skips if the
    server cannot be reached."""
    admin = create_engine(POSTGRES, isolation_level="AUTOCOMMIT")
    try:
        conn = admin.connect()
    except OperationalError as exc:
        admin.dispose()
        pytest.skip(f"PostgreSQL not reachable at {POSTGRES} (KNOBS_TEST_POSTGRES): "
                    f"{str(exc).splitlines()[0]}")
    name = f"knobs_test_{secrets.token_hex(6)}"
    conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        yield make_url(POSTGRES).set(database=name).render_as_string(hide_password=False)
    finally:
        conn.exec_driver_sql(f'DROP DATABASE "{name}" WITH (FORCE)')
        conn.close()
        admin.dispose()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def uvicorn_process(bundle: Path, database_url: str, **env: str
                    ) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """The app in its own uvicorn process on loopback: (base URL, process) once ready;
    terminated (or already killed by the test) afterwards."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "app.main:create_app", "--factory",
         "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
        cwd=REPO, env={**os.environ, "KNOBS_BUNDLE": str(bundle), "KNOBS_DEVICE": "cpu",
                       "KNOBS_DATABASE_URL": database_url, **env})
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 60
        while True:
            assert proc.poll() is None, f"uvicorn exited with {proc.returncode}"
            assert time.time() < deadline, "uvicorn was not ready within 60 s"
            try:
                if httpx.get(f"{base}/readyz").status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        yield base, proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(20)
