"""One htmx contract: the same URL renders the whole page, or only its fragment when the
request carries HX-Request (style.md). Every template also gets `nouns`, what the served
bundle's items are called (app.engine.Nouns)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.templating import Jinja2Templates
from starlette.responses import Response

from app.engine import nouns


def bundle_words(request: Request) -> dict[str, Any]:
    """The served bundle's nouns, in every template's context (a page rendered without
    an engine, outside the app's lifespan, says the neutral "titles")."""
    engine = getattr(request.app.state, "engine", None)
    return {"nouns": engine.nouns if engine is not None else nouns("")}


TEMPLATES = Jinja2Templates(directory=str(Path(__file__).resolve().parents[1] / "templates"),
                            context_processors=[bundle_words])


def is_htmx(request: Request) -> bool:
    return request.headers.get("HX-Request") == "true"


def render(request: Request, page: str, fragment: str, context: dict[str, Any],
           status_code: int = 200) -> Response:
    """pages/<page> normally, partials/<fragment> on an htmx request."""
    name = f"partials/{fragment}" if is_htmx(request) else f"pages/{page}"
    return TEMPLATES.TemplateResponse(request, name, context, status_code=status_code)
