"""Liveness and readiness."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """The process answers."""
    return {"status": "ok"}


@router.get("/readyz", response_model=None)
def readyz(request: Request) -> dict[str, Any] | JSONResponse:
    """The bundle is loaded and warmed up."""
    engine = getattr(request.app.state, "engine", None)
    if engine is None:
        return JSONResponse({"status": "loading"}, status_code=503)
    b = engine.bundle
    return {"status": "ready", "bundle": str(b.path), "bundle_sha256": b.sha256,
            "dataset": b.config["dataset"], "device": str(engine.device),
            "items": engine.n_items, "neurons": b.concepts.h}
