"""create_app(): the lifespan loads the bundle once, warms the engine, mounts the routers."""

from __future__ import annotations

import gc
import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import torch
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema
from starlette.exceptions import HTTPException
from starlette.responses import Response

from app import service
from app.db import queries
from app.db.session import Database, DatabaseError
from app.engine import Engine
from app.fastlane import FastLane
from app.htmx import TEMPLATES, is_htmx
from app.knobstate import KnobError
from app.rounds import Rounds
from app.routes import admin, api, health, pages, sessions, studies
from app.routes.pages import PageError
from app.security import GuardMiddleware
from app.service import NotFound
from app.sessions import Conflict, Stale
from app.settings import Settings
from models.bundle import Bundle, BundleError, load_bundle
from models.train import resolve_device

log = logging.getLogger(__name__)
ROOT = Path(__file__).resolve().parents[1]


class StartupError(RuntimeError):
    """The app cannot serve: the message says why and what to do."""


def open_bundle(settings: Settings, bundle: Bundle | None = None, on: str | None = None
                ) -> tuple[torch.device, Bundle]:
    """The device and the bundle of `settings` (or the one given), loaded and checked,
    onto that device or `on` (a parent of workers checks it on "cpu": no model and no CUDA
    context it would keep); StartupError if the bundle is missing or corrupt or the device
    is unavailable."""
    try:
        device = resolve_device(settings.device)
        return device, bundle or load_bundle(settings.bundle, on or device)
    except (BundleError, RuntimeError) as exc:
        raise StartupError(f"cannot serve {settings.bundle}: {exc}") from exc


def load_engine(settings: Settings, bundle: Bundle | None = None) -> Engine:
    """The engine for `settings` (or an already loaded bundle); StartupError as
    `open_bundle`."""
    device, bundle = open_bundle(settings, bundle)
    # a request's tensor ops are small: intra-op threads only contend with the server's
    torch.set_num_threads(settings.torch_threads)
    engine = Engine(bundle, device, settings.row_cache_mb << 20, settings.user_cache)
    engine.warm_up()
    service.warm_up(engine)
    return engine


def open_database(settings: Settings) -> tuple[Database, str]:
    """The database (migrated to head) and the cookie secret; StartupError if the
    database cannot be used."""
    db = Database(settings.database_url)
    try:
        db.check_migrated()
        if settings.secret_key:
            return db, settings.secret_key
        with db.write() as s:
            return db, queries.secret(s)
    except DatabaseError as exc:
        db.dispose()
        raise StartupError(str(exc)) from exc


def create_app(settings: Settings | None = None, bundle: Bundle | None = None,
               engine: Engine | None = None) -> FastAPI:
    """The app; its lifespan opens the database (which must be migrated) and loads
    `settings.bundle` (or serves the given bundle or an engine already loaded), and
    refuses to start (StartupError) when it cannot."""
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.db, app.state.secret = open_database(settings)
        try:
            app.state.engine = engine or load_engine(settings, bundle)
            app.state.rounds = Rounds(app.state.engine)
            log.info("serving %s on %s, database %s", settings.bundle,
                     app.state.engine.device, app.state.db.safe_url)
            # what is loaded now lives as long as the app: out of the collector's way,
            # so a full collection does not walk the catalog on a request's time (p99
            # at 64 clients 197 -> 50 ms, reports/performance.md); given back at exit
            gc.collect()
            gc.freeze()
            yield
        finally:
            gc.unfreeze()
            app.state.db.dispose()

    # FastAPI's native OpenTelemetry is off: Knobs configures no providers, and the check
    # for global ones ran on every request (22-25 us of a 0.37 ms knob change in process)
    app = FastAPI(title="Knobs", version="1", lifespan=lifespan, redoc_url=None,
                  description="Steer recommendations with labelled SAE knobs.",
                  telemetry={"tracing": False, "metrics": False, "logs": False})
    app.state.settings = settings

    for error, status in ((NotFound, 404), (queries.Missing, 404), (PageError, 422),
                          (KnobError, 422), (PermissionError, 403), (Conflict, 409),
                          (Stale, 409)):
        app.add_exception_handler(error, _handler(status))

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        return _error(request, exc.status_code, str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> Response:
        """422 naming each field; the input is not echoed back (it may hold NaN, lone
        surrogates or a megabyte of junk)."""
        errors = [{"type": e["type"], "loc": [_text(p) for p in e["loc"]],
                   "msg": _text(e["msg"])} for e in exc.errors()]
        if request.url.path.startswith("/api/"):
            return Response(json.dumps({"detail": errors}, ensure_ascii=True),
                            status_code=422, media_type="application/json")
        return _error(request, 422, "; ".join(
            f"{'.'.join(str(p) for p in e['loc'][1:])}: {e['msg']}" for e in errors))

    app.include_router(health.router)
    app.include_router(api.router)
    app.include_router(sessions.api)
    app.include_router(pages.router)
    app.include_router(sessions.router)
    app.include_router(studies.router)
    app.include_router(admin.router)
    _document(app, api.DOCUMENTED_MODELS)
    app.add_middleware(FastLane, routes=api.FAST_LANE)      # inside the guard
    app.add_middleware(GuardMiddleware, max_body=settings.max_body_bytes,
                       secure=settings.cookie_secure)
    app.mount("/static", StaticFiles(directory=str(ROOT / "static")), name="static")
    return app


def _document(app: FastAPI, models: list[type[BaseModel]]) -> None:
    """Add `models` (and the models they use) to the OpenAPI components: request bodies
    that endpoints validate themselves (`api.json_body`) are still documented."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = generate()
            _, defs = models_json_schema([(m, "validation") for m in models],
                                         ref_template="#/components/schemas/{model}")
            schema.setdefault("components", {}).setdefault("schemas", {}).update(
                defs.get("$defs", {}))
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _text(value: object) -> str | int:
    """A location part or message as safe text (lone surrogates escaped)."""
    if isinstance(value, int):
        return value
    return str(value).encode("utf-8", "backslashreplace").decode("utf-8")


def _handler(status: int) -> Any:
    async def handle(request: Request, exc: Exception) -> Response:
        return _error(request, status, str(exc))
    return handle


def _error(request: Request, status: int, message: str) -> Response:
    """JSON {"detail": ...} for the API, an HTML page (or fragment) for the pages; the
    message is escaped by the template."""
    if request.url.path.startswith("/api/"):
        return JSONResponse({"detail": message}, status_code=status)
    name = "partials/_error.html" if is_htmx(request) else "pages/error.html"
    return TEMPLATES.TemplateResponse(request, name, {"status": status, "message": message},
                                      status_code=status)
