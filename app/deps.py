"""Annotated dependency aliases: handlers receive the engine and settings, never globals."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from app.engine import Engine
from app.settings import Settings


def get_engine(request: Request) -> Engine:
    engine: Engine = request.app.state.engine
    return engine


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


EngineDep = Annotated[Engine, Depends(get_engine)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
