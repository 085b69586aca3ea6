"""One htmx contract: the same URL renders the whole page, or only its fragment when the
request carries HX-Request (style.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.templating import Jinja2Templates
from starlette.responses import Response

TEMPLATES = Jinja2Templates(directory=str(Path(__file__).resolve().parents[1] / "templates"))


def is_htmx(request: Request) -> bool:
    return request.headers.get("HX-Request") == "true"


def render(request: Request, page: str, fragment: str, context: dict[str, Any],
           status_code: int = 200) -> Response:
    """pages/<page> normally, partials/<fragment> on an htmx request."""
    name = f"partials/{fragment}" if is_htmx(request) else f"pages/{page}"
    return TEMPLATES.TemplateResponse(request, name, context, status_code=status_code)
