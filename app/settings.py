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
    """Memory for cached per-neuron item-score rows."""
    user_cache: int = Field(default=4096, ge=1)
    """User states kept (code, scores)."""
    torch_threads: int = Field(default=1, ge=1)
    """Torch intra-op threads of the server process (its ops are small)."""
