"""create_app(): the lifespan loads the bundle once, warms the engine, mounts the routers."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from app.engine import Engine
from app.routes import api, health
from app.service import NotFound
from app.settings import Settings
from models.bundle import Bundle, BundleError, load_bundle
from models.train import resolve_device

log = logging.getLogger(__name__)


class StartupError(RuntimeError):
    """The app cannot serve: the message says why and what to do."""


def load_engine(settings: Settings, bundle: Bundle | None = None) -> Engine:
    """The engine for `settings` (or an already loaded bundle); StartupError if the bundle
    is missing or corrupt or the device is unavailable."""
    try:
        device = resolve_device(settings.device)
        bundle = bundle or load_bundle(settings.bundle, device)
    except (BundleError, RuntimeError) as exc:
        raise StartupError(f"cannot serve {settings.bundle}: {exc}") from exc
    engine = Engine(bundle, device, settings.row_cache_mb << 20, settings.user_cache)
    engine.warm_up()
    return engine


def create_app(settings: Settings | None = None, bundle: Bundle | None = None,
               engine: Engine | None = None) -> FastAPI:
    """The app; its lifespan loads `settings.bundle` (or serves the given bundle or an
    engine already loaded) and refuses to start (StartupError) when it cannot."""
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.engine = engine or load_engine(settings, bundle)
        log.info("serving %s on %s", settings.bundle, app.state.engine.device)
        yield

    app = FastAPI(title="Knobs", version="1", lifespan=lifespan,
                  description="Steer recommendations with labelled SAE knobs.")
    app.state.settings = settings

    @app.exception_handler(NotFound)
    async def not_found(_: Request, exc: NotFound) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=404)

    app.include_router(health.router)
    app.include_router(api.router)
    return app
