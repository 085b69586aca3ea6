"""Annotated dependency aliases: handlers receive the engine, settings, database and
visitor, never globals; CSRF and the admin check are dependencies too (one place each).
The trivial ones are `async def`: FastAPI runs a plain `def` dependency on a worker
thread, a hop that cost more than a warm knob change."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from app.db.session import Database
from app.engine import Engine
from app.security import check_csrf, require_admin, visitor
from app.settings import Settings


async def get_engine(request: Request) -> Engine:
    engine: Engine = request.app.state.engine
    return engine


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_db(request: Request) -> Database:
    db: Database = request.app.state.db
    return db


EngineDep = Annotated[Engine, Depends(get_engine)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
DbDep = Annotated[Database, Depends(get_db)]
VisitorDep = Annotated[str, Depends(visitor)]
"""The visitor id (a new one, and its signed cookie, if the request had none)."""
Csrf = Depends(check_csrf)
"""For state-changing form routes: `dependencies=[Csrf]`."""
Admin = Depends(require_admin)
"""For admin routes: `dependencies=[Admin]`."""
