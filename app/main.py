"""create_app(): the lifespan loads the bundle once, warms the engine, mounts the routers."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import torch
from fastapi import FastAPI, Request
from fastapi.exception_handlers import request_validation_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.responses import Response

from app.engine import Engine
from app.htmx import TEMPLATES, is_htmx
from app.routes import api, health, pages
from app.routes.pages import PageError
from app.service import NotFound
from app.settings import Settings
from models.bundle import Bundle, BundleError, load_bundle
from models.train import resolve_device

log = logging.getLogger(__name__)
ROOT = Path(__file__).resolve().parents[1]


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
    # a request's tensor ops are small: intra-op threads only contend with the server's
    torch.set_num_threads(settings.torch_threads)
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
    async def not_found(request: Request, exc: NotFound) -> Response:
        return _error(request, 404, str(exc))

    @app.exception_handler(PageError)
    async def bad_page_input(request: Request, exc: PageError) -> Response:
        return _error(request, 422, str(exc))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> Response:
        if request.url.path.startswith("/api/"):
            return await request_validation_exception_handler(request, exc)
        return _error(request, 422, "; ".join(
            f"{'.'.join(str(p) for p in e['loc'][1:])}: {e['msg']}" for e in exc.errors()))

    app.include_router(health.router)
    app.include_router(api.router)
    app.include_router(pages.router)
    app.mount("/static", StaticFiles(directory=str(ROOT / "static")), name="static")
    return app


def _error(request: Request, status: int, message: str) -> Response:
    """JSON {"detail": ...} for the API, an HTML page (or fragment) for the pages; the
    message is escaped by the template."""
    if request.url.path.startswith("/api/"):
        return JSONResponse({"detail": message}, status_code=status)
    name = "partials/_error.html" if is_htmx(request) else "pages/error.html"
    return TEMPLATES.TemplateResponse(request, name, {"status": status, "message": message},
                                      status_code=status)
