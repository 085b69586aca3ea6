"""Session-wide fixtures: a seeded torch generator, the test device, small seeded synthetic
data with planted concepts, and the real-data folder (skipped when absent).

Tests marked `gpu` skip cleanly when torch sees no CUDA GPU. The device for the rest is the
CPU unless KNOBS_TEST_DEVICE=cuda. Torch uses 2 threads (KNOBS_TEST_THREADS overrides: on a
machine whose cores are busy with other work, 1 thread avoids OpenMP contention that makes
tiny ops a hundred times slower).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from models.data.interactions import Interactions, positives_from_ratings
from models.data.synthetic import Synthetic, make_synthetic

torch.set_num_threads(int(os.environ.get("KNOBS_TEST_THREADS", "2")))

_REAL_DATA = (
    Path(os.environ["KNOBS_DATA_DIR"]) if os.environ.get("KNOBS_DATA_DIR")
    else Path(__file__).resolve().parents[1].parent / "shared" / "datasets"
)

# Small enough that a model trains in a second, large enough for planted concepts to show.
SYNTHETIC_SIZE = {"n_users": 240, "n_items": 120, "n_concepts": 6}
SYNTHETIC_SEED = 7


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA; torch sees no GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def generator() -> torch.Generator:
    """A fresh CPU generator with a fixed seed, for weights, batches and augmentation."""
    return torch.Generator().manual_seed(1234)


@pytest.fixture(scope="session")
def torch_device() -> torch.device:
    """cpu, or cuda when KNOBS_TEST_DEVICE=cuda (skips if there is no GPU)."""
    name = os.environ.get("KNOBS_TEST_DEVICE", "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        pytest.skip(f"KNOBS_TEST_DEVICE={name} but torch sees no CUDA GPU")
    return torch.device(name)


@pytest.fixture(scope="session")
def synthetic() -> Synthetic:
    """Seeded synthetic ratings with planted concepts (see models.data.synthetic)."""
    return make_synthetic(**SYNTHETIC_SIZE, seed=SYNTHETIC_SEED)


@pytest.fixture(scope="session")
def interactions(synthetic: Synthetic) -> Interactions:
    """The synthetic ratings as binary positives (method.md §1)."""
    return positives_from_ratings(synthetic.ratings)


@pytest.fixture
def real_data_dir() -> Path:
    """The shared real datasets (../shared/datasets or KNOBS_DATA_DIR); skips if absent."""
    if not _REAL_DATA.is_dir():
        pytest.skip(f"real datasets not found at {_REAL_DATA} (set KNOBS_DATA_DIR)")
    return _REAL_DATA
