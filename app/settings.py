"""Settings of the web app: one pydantic-settings class read from KNOBS_* variables."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """KNOBS_BUNDLE, KNOBS_DEVICE, ... ; tests pass an instance to `create_app`."""

    model_config = SettingsConfigDict(env_prefix="KNOBS_", extra="ignore")

    bundle: Path = Path("bundles/ml-latest-small")
    """The bundle folder to serve (written by `knobs train`)."""
    device: str = Field(default="auto", pattern=r"^(auto|cpu|cuda(:\d+)?)$")
    """auto: CUDA when present, else CPU."""
    row_cache_mb: int = Field(default=256, ge=1)
    """Memory for item-score rows: the whole table R = W_dec A^T, held from start-up, when
    it fits; else an LRU cache of per-neuron rows. Concept knobs' mean rows get an LRU
    cache of the same size."""
    user_cache: int = Field(default=4096, ge=1)
    """User states kept (code, scores)."""
    torch_threads: int = Field(default=1, ge=1)
    """Torch intra-op threads of the server process (its ops are small)."""
    database_url: str = "sqlite:///data/knobs.db"
    """SQLAlchemy URL: SQLite (embedded default) or postgresql+psycopg://... for several
    replicas. `alembic upgrade head` must have run (make demo does)."""
    secret_key: str | None = Field(default=None, min_length=32)
    """Signs cookies; unset: one is generated once and kept in the database, so every
    replica shares it."""
    admin_token: str | None = Field(default=None, min_length=16)
    """Opens the admin pages and endpoints; unset: admin is disabled, not open."""
    cookie_secure: bool = False
    """Mark cookies Secure (set it behind HTTPS)."""
    max_body_bytes: int = Field(default=64 << 10, ge=1024)
    """Request bodies larger than this are refused with 413."""
