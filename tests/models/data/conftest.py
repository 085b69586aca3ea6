"""Fixtures shared by the data-loader tests.

Every test runs with KNOBS_DATA_DIR unset, KNOBS_CACHE_DIR in its own tmp folder and every
download URL pointed at a closed port on 127.0.0.1, so no test can touch the network or a
developer's cache. Real-data tests get the real folder from the `real_data_dir` fixture,
captured before the environment is cleared.
"""

from __future__ import annotations

import dataclasses
import os
import socket
from pathlib import Path

import pytest

from models.data import download

_REAL_DATA = (
    Path(os.environ["KNOBS_DATA_DIR"]) if os.environ.get("KNOBS_DATA_DIR")
    else Path(__file__).resolve().parents[3].parent / "shared" / "datasets"
)


def closed_port() -> int:
    """A local TCP port nothing listens on (connections are refused at once)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(autouse=True)
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No KNOBS_DATA_DIR, a private cache, and no reachable download URL."""
    monkeypatch.delenv(download.DATA_DIR_ENV, raising=False)
    cache = tmp_path / "cache"
    monkeypatch.setenv(download.CACHE_DIR_ENV, str(cache))
    port = closed_port()
    for name, src in list(download.SOURCES.items()):
        url = f"http://127.0.0.1:{port}/{src.archive_name}"
        monkeypatch.setitem(download.SOURCES, name, dataclasses.replace(src, url=url))
    return cache


@pytest.fixture
def real_data_dir() -> Path:
    """The shared real datasets (../shared/datasets or KNOBS_DATA_DIR); skips if absent."""
    if not _REAL_DATA.is_dir():
        pytest.skip(f"real datasets not found at {_REAL_DATA} (set KNOBS_DATA_DIR)")
    return _REAL_DATA
