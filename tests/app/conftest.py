"""Fixtures of the web-app tests: one small bundle trained on the planted synthetic data,
shared by the API, page and browser tests."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from alembic import command

from app.db.session import alembic_config
from app.settings import Settings
from models.bundle import save_bundle
from models.config import ELSAConfig, SAEConfig, TrainConfig
from models.data.datasets import load_dataset
from models.pipeline import label_knobs, train_models

CFG = TrainConfig(elsa=ELSAConfig(d=24, lr=3e-2, batch_size=32, max_epochs=10, patience=4),
                  sae=SAEConfig(h=48, k=6, lr=1e-2, batch_size=64, max_epochs=8, patience=4,
                                subsamples_per_user=4, item_onehots=True, init_b_dec=True,
                                refine_steps=20, refine_candidates=12), seed=1)


@pytest.fixture(scope="session")
def bundle_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    ds = load_dataset("synthetic")
    dev = torch.device("cpu")
    trained = train_models(ds.interactions, CFG, dev, progress=False)
    concepts, settings = label_knobs(trained.elsa, trained.sae, ds.interactions, ds.catalog,
                                     ds.tag_events, dev)
    out = tmp_path_factory.mktemp("bundle") / "synthetic"
    save_bundle(out, dataset="synthetic", elsa=trained.elsa, sae=trained.sae,
                train_config=CFG, data=ds.interactions, catalog=ds.catalog,
                quality=trained.quality, concepts=concepts, concept_settings=settings)
    return out




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
