"""Steering sessions: the steer page (autosaved, a refresh resumes it), knob changes,
item clicks and permalinks, as pages (htmx fragments) and as JSON API v1."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import pydantic_core
from fastapi import APIRouter, Depends, Form, HTTPException, Query, Request
from fastapi.responses import RedirectResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from app import knobstate, service, sessions
from app.deps import Csrf, DbDep, EngineDep, VisitorDep
from app.htmx import TEMPLATES, is_htmx
from app.knobstate import Entry, KnobError
from app.routes.pages import IntList
from app.schemas import ERRORS, MAX_KNOBS, ItemOut, Problem, RankedItem
from app.security import check_csrf, csrf_token, known_visitor, require_json, same
from app.sessions import Screen

router = APIRouter(tags=["pages"], include_in_schema=False)
api = APIRouter(prefix="/api/v1/sessions", tags=["sessions"], responses={
    **ERRORS, 409: {"model": Problem, "description": "The session kept changing"},
    415: {"model": Problem, "description": "Not a JSON request"}})
StrList = Annotated[list[str] | None, Query()]


def page_context(request: Request, screen: Screen, layout: str = "full",
                 readonly: bool = False) -> dict[str, Any]:
    engine = request.app.state.engine
    vid = known_visitor(request)
    return {
        "s": screen, "rows": screen.rows, "view": screen.view, "layout": layout,
        "readonly": readonly, "condition": screen.condition,
        "history": [service.item_out(engine, i) for i in screen.history],
        "csrf": csrf_token(request.app.state.secret, vid) if vid and not readonly else "",
        "max_knobs": MAX_KNOBS,
    }


def _subject(user: int | None, items: list[int]) -> tuple[int | None, list[int] | None]:
    if (user is None) == (not items):
        raise KnobError("give a user or at least three liked items")
    if user is None and len(items) < 3:
        raise KnobError(f"items: pick at least three liked titles, got {len(items)}")
    if len(items) > 500:
        raise KnobError(f"items: at most 500 liked titles, got {len(items)}")
    return user, (list(dict.fromkeys(items)) if items else None)


@router.get("/steer")
async def steer(db: DbDep, engine: EngineDep, visitor: VisitorDep, user: int | None = None,
                items: IntList = None, kid: StrList = None, ka: StrList = None,
                kd: StrList = None, n: int = Query(20, ge=1, le=100)) -> Response:
    """Open (or resume) your session on a dataset user or a list of liked titles; knobs
    given in the URL (kid/ka/kd) start a new session with them."""
    who, liked = _subject(user, items or [])
    knobs = knobstate.from_form(kid or [], ka or [], kd or []) if kid else None
    sid = await run_in_threadpool(sessions.open_session, db, engine, visitor, who, liked, n,
                                  knobs)
    return RedirectResponse(f"/sessions/{sid}", status_code=303)


@router.post("/sessions", dependencies=[Csrf])
async def new_session(db: DbDep, engine: EngineDep, visitor: VisitorDep,
                      user: Annotated[int | None, Form()] = None,
                      items: Annotated[list[int] | None, Form()] = None) -> Response:
    who, liked = _subject(user, items or [])
    sid = await run_in_threadpool(sessions.open_session, db, engine, visitor, who, liked)
    return RedirectResponse(f"/sessions/{sid}", status_code=303)


@router.get("/sessions/{sid}")
async def session_page(request: Request, sid: str, db: DbDep, engine: EngineDep) -> Response:
    """Your steering screen, as you left it; logged as a page view."""
    study = await run_in_threadpool(sessions.study_of, db, sid, known_visitor(request))
    if study is not None:                   # a study screen lives at the study's address
        return RedirectResponse(f"/study/{study}/steer", status_code=303)
    screen = await run_in_threadpool(sessions.step, db, engine, sid, known_visitor(request),
                                     None, True)
    return TEMPLATES.TemplateResponse(request, "pages/steer.html",
                                      page_context(request, screen))


@router.post("/sessions/{sid}/knobs", dependencies=[Csrf])
async def change_knobs(request: Request, sid: str, db: DbDep, engine: EngineDep) -> Response:
    """A knob form: its full state (full=1 with kid/ka/kd), and/or add, remove, nudge
    ("<key>:+" / "<key>:-") or reset. htmx gets the fragment it targets (#recs or
    #steer-panel); without JS, a redirect back to the page."""
    form = await request.form()
    kid, ka, kd = (form.getlist(k) for k in ("kid", "ka", "kd"))
    one = {k: v if isinstance(v := form.get(k), str) else None
           for k in ("add", "remove", "nudge", "reset", "full")}
    entries = knobstate.from_form([str(x) for x in kid], [str(x) for x in ka],
                                  [str(x) for x in kd]) if one["full"] else None
    edit = sessions.form_edit(entries, one["add"], one["remove"], one["nudge"],
                              bool(one["reset"]))
    screen = await run_in_threadpool(sessions.step, db, engine, sid, known_visitor(request),
                                     edit)
    if not is_htmx(request):
        target = f"/study/{screen.study}/steer" if screen.study else f"/sessions/{sid}"
        return RedirectResponse(target, status_code=303)
    layout = "study" if screen.study else "full"
    name = "partials/_steer.html" if request.headers.get("HX-Target") == "steer-panel" \
        else "partials/_recs.html"
    return TEMPLATES.TemplateResponse(request, name, page_context(request, screen, layout))


@router.api_route("/sessions/{sid}/click/{item_id}", methods=["GET", "POST"])
async def click(request: Request, sid: str, item_id: int, db: DbDep,
                t: str = Query("", max_length=64)) -> Response:
    """Log a click on a recommended item; GET (a link carrying the form token as `t`)
    goes on to the item's page, POST (htmx, the study layout) answers 204."""
    vid = known_visitor(request)
    if request.method == "POST":
        await check_csrf(request)
    elif vid is None or not same(t, csrf_token(request.app.state.secret, vid)):
        raise HTTPException(403, "csrf: missing or invalid link token (reload the page)")
    await run_in_threadpool(sessions.click, db, sid, vid, item_id)
    if request.method == "POST":
        return Response(status_code=204)
    return RedirectResponse(f"/items/{item_id}", status_code=303)


@router.post("/sessions/{sid}/permalink", dependencies=[Csrf])
async def permalink(request: Request, sid: str, db: DbDep, engine: EngineDep,
                    layout: Annotated[Literal["full", "study"], Form()] = "full") -> Response:
    """Freeze this screen (bundle, knobs, list) under a link for screenshots."""
    screen = await run_in_threadpool(sessions.step, db, engine, sid, known_visitor(request))
    link = await run_in_threadpool(sessions.freeze, db, engine, screen, layout)
    return RedirectResponse(f"/p/{link}", status_code=303)


@router.get("/p/{link_id}")
async def permalink_page(request: Request, link_id: str, db: DbDep, engine: EngineDep
                         ) -> Response:
    """A frozen screen, the same bytes on any server with the same bundle."""
    link, screen = await run_in_threadpool(sessions.thaw, db, engine, link_id)
    return TEMPLATES.TemplateResponse(request, "pages/permalink.html",
                                      page_context(request, screen, link.layout, True))


# ---- JSON API v1 -----------------------------------------------------------------------

class KnobState(BaseModel):
    """A knob of a session: key "n:<neuron>", "c:<concept>" or "p:<preset>"."""

    model_config = ConfigDict(extra="forbid", strict=True)

    key: str = Field(pattern=r"^(n:\d{1,9}|p:\d{1,9}|c:.{1,200})$")
    alpha: float = Field(ge=0.0, le=1.0)
    direction: Literal["more", "less"] = "more"


class SessionIn(BaseModel):
    """A new session on a dataset user or on liked items (external ids); without knobs it
    starts from the subject's own most active neurons, at 0."""

    model_config = ConfigDict(extra="forbid", strict=True,
                              json_schema_extra={"examples": [{"user": 1, "n": 10}]})

    user: int | None = None
    items: list[int] | None = Field(default=None, min_length=3, max_length=500)
    n: int = Field(default=20, ge=1, le=100)
    knobs: list[KnobState] | None = Field(default=None, max_length=MAX_KNOBS)


class KnobsIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    knobs: list[KnobState] = Field(max_length=MAX_KNOBS)


class KnobShown(KnobState):
    label: str
    kind: str
    neurons: list[int]


class SessionOut(BaseModel):
    id: str
    user: int | None
    items: list[int] | None
    n: int
    knobs: list[KnobShown]
    scaled: bool
    """The "more" alphas add up to over 1 and were scaled to share 1."""
    steered: list[RankedItem]
    unsteered: list[ItemOut]
    events: list[int]
    """Ids of the events this call logged, committed before the answer."""


class ResetIn(BaseModel):
    """No fields: a reset takes the JSON object {}."""

    model_config = ConfigDict(extra="forbid", strict=True)


class ClickIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    type: Literal["item_click"] = "item_click"
    item: int


class EventOut(BaseModel):
    id: int


def _out(screen: Screen, status: int = 200) -> Response:
    """The session as JSON (SessionOut), serialised once from our own plain data."""
    body = {"id": screen.id, "user": screen.user, "items": screen.items, "n": screen.n,
            "knobs": [{"key": r.key, "alpha": r.alpha, "direction": r.direction,
                       "label": r.label, "kind": r.kind, "neurons": r.neurons}
                      for r in screen.rows],
            "scaled": screen.view["scaled"], "steered": screen.view["steered"],
            "unsteered": screen.view["unsteered"], "events": screen.events}
    return Response(pydantic_core.to_json(body, inf_nan_mode="null"), status_code=status,
                    media_type="application/json")


def _entries(knobs: list[KnobState]) -> list[Entry]:
    return knobstate.from_form([k.key for k in knobs], [k.alpha for k in knobs],
                               [k.direction for k in knobs])


def _link(operation: str, **extra: str) -> dict[str, Any]:
    return {"operationId": operation,
            "parameters": {"sid": "$response.body#/id", **extra}}


SESSION_LINKS = {
    "GetSession": _link("get_session"),
    "SetKnobs": _link("set_knobs"),
    "Reset": _link("reset_session"),
    "Click": {**_link("click_item"), "requestBody": {"item": "$response.body#/steered/0/id"}},
}
"""OpenAPI links from a new session to what can be done with it (stateful fuzzing)."""


@api.post("", status_code=201, response_model=SessionOut, operation_id="new_session",
          responses={201: {"links": SESSION_LINKS}})
async def api_new_session(req: SessionIn, db: DbDep, engine: EngineDep,
                          visitor: VisitorDep) -> Response:
    """Open a session (it belongs to the visitor cookie this answer sets)."""
    who, liked = _subject(req.user, req.items or [])
    knobs = _entries(req.knobs) if req.knobs else None
    sid = await run_in_threadpool(sessions.open_session, db, engine, visitor, who, liked,
                                  req.n, knobs, False)
    screen = await run_in_threadpool(sessions.step, db, engine, sid, visitor)
    return _out(screen, 201)


@api.get("/{sid}", response_model=SessionOut, operation_id="get_session",
         responses={200: {"links": SESSION_LINKS}})
async def api_session(request: Request, sid: str, db: DbDep, engine: EngineDep
                      ) -> Response:
    """Your session: its knobs and the lists it shows (not logged)."""
    return _out(await run_in_threadpool(sessions.step, db, engine, sid,
                                        known_visitor(request)))


@api.put("/{sid}/knobs", response_model=SessionOut, operation_id="set_knobs",
         responses={200: {"links": SESSION_LINKS}})
async def api_knobs(request: Request, sid: str, req: KnobsIn, db: DbDep, engine: EngineDep
                    ) -> Response:
    """Set the session's knobs; each added, moved, removed or turned knob is logged, and
    the answer comes after the commit."""
    edit = sessions.form_edit(_entries(req.knobs))
    return _out(await run_in_threadpool(sessions.step, db, engine, sid,
                                        known_visitor(request), edit))


@api.post("/{sid}/reset", response_model=SessionOut, dependencies=[Depends(require_json)],
          operation_id="reset_session", responses={200: {"links": SESSION_LINKS}})
async def api_reset(request: Request, sid: str, req: ResetIn, db: DbDep, engine: EngineDep
                    ) -> Response:
    """Back to the subject's own knobs at 0 (logged as one reset)."""
    edit = sessions.form_edit(None, reset=True)
    return _out(await run_in_threadpool(sessions.step, db, engine, sid,
                                        known_visitor(request), edit))


@api.post("/{sid}/events", status_code=201, response_model=EventOut,
          operation_id="click_item")
async def api_event(request: Request, sid: str, req: ClickIn, db: DbDep) -> EventOut:
    """Log a click on an item the session shows."""
    return EventOut(id=await run_in_threadpool(sessions.click, db, sid,
                                               known_visitor(request), req.item))
