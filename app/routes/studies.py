"""A participant's path through a study: consent -> a profile of liked titles -> the
steering screen in their condition (study layout) -> a completion code."""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import RedirectResponse
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from app import sessions
from app.db import queries
from app.db.session import Database
from app.db.tables import EventType, Participant, Study, utcnow
from app.deps import Csrf, DbDep, EngineDep, VisitorDep
from app.engine import Engine
from app.htmx import TEMPLATES
from app.routes.pages import PageError
from app.routes.sessions import page_context
from app.security import csrf_token, known_visitor

router = APIRouter(prefix="/study", tags=["studies"], include_in_schema=False)
PID = re.compile(r"[A-Za-z0-9_.:-]{1,128}")


def _study(db: Database, slug: str) -> Study:
    with db.read() as s:
        return queries.study(s, slug)


def _open_for_joining(study: Study) -> None:
    """A closed study takes no new participants (those in it may finish)."""
    if not study.active:
        raise queries.Missing(f"study {study.slug!r} is closed")


def _me(db: Database, study: Study, visitor: str | None) -> Participant | None:
    with db.read() as s:
        return queries.participant(s, study, visitor)


def _next(db: Database, study: Study, p: Participant) -> str:
    """Where a returning participant resumes."""
    if p.completed_at is not None:
        return f"/study/{study.slug}/done"
    with db.read() as s:
        has_session = queries.participant_session(s, p) is not None
    return f"/study/{study.slug}/{'steer' if has_session else 'profile'}"


@router.get("/{slug}")
def consent_page(request: Request, slug: str, db: DbDep, visitor: VisitorDep,
                 pid: str | None = Query(None, max_length=128)) -> Response:
    """The consent page; `pid` is the participant id a recruiting platform passes."""
    study = _study(db, slug)
    me = _me(db, study, visitor)
    if me is not None:
        return RedirectResponse(_next(db, study, me), status_code=303)
    _open_for_joining(study)
    if pid is not None and not PID.fullmatch(pid):
        raise PageError("pid: letters, digits and _ . : - only, at most 128")
    return TEMPLATES.TemplateResponse(request, "pages/study_consent.html", {
        "study": study, "pid": pid or "",
        "csrf": csrf_token(request.app.state.secret, visitor), "layout": "study"})


@router.post("/{slug}/consent", dependencies=[Csrf])
def consent(slug: str, db: DbDep, visitor: VisitorDep,
            pid: Annotated[str, Form(max_length=128)] = "") -> Response:
    """Join the study: a condition with the fewest participants so far."""
    if pid and not PID.fullmatch(pid):
        raise PageError("pid: letters, digits and _ . : - only, at most 128")
    with db.write() as s:
        study = queries.study(s, slug, lock=True)
        me = queries.participant(s, study, visitor)
        if me is None:
            _open_for_joining(study)
            me = queries.assign(s, study, visitor, pid or None)
            queries.log(s, None, EventType.consent, [], participant=me)
            s.commit()
    return RedirectResponse(f"/study/{slug}/profile", status_code=303)


def _participant(db: Database, slug: str, request: Request) -> tuple[Study, Participant]:
    study = _study(db, slug)
    me = _me(db, study, known_visitor(request))
    if me is None:
        raise queries.Missing(f"you have not joined study {slug!r}: start at /study/{slug}")
    return study, me


@router.get("/{slug}/profile")
def profile_page(request: Request, slug: str, db: DbDep) -> Response:
    study, me = _participant(db, slug, request)
    if me.completed_at is not None:
        return RedirectResponse(f"/study/{slug}/done", status_code=303)
    _viewed(db, me, "profile")
    return TEMPLATES.TemplateResponse(request, "pages/study_profile.html", {
        "study": study, "layout": "study", "items": [], "liked": [], "q": "",
        "csrf": csrf_token(request.app.state.secret, known_visitor(request) or "")})


@router.post("/{slug}/start", dependencies=[Csrf])
async def start(request: Request, slug: str, db: DbDep, engine: EngineDep,
                items: Annotated[list[int] | None, Form()] = None) -> Response:
    """The participant's steering session on the titles they picked."""
    study, me = _participant(db, slug, request)
    liked = list(dict.fromkeys(items or []))
    if len(liked) < 3:
        raise PageError(
            f"items: pick at least three liked titles, got {len(liked)}")
    if len(liked) > 500:
        raise PageError("items: at most 500 liked titles")
    await run_in_threadpool(_open, db, engine, study, me, liked)
    return RedirectResponse(f"/study/{slug}/steer", status_code=303)


def _open(db: Database, engine: Engine, study: Study, me: Participant, liked: list[int]
          ) -> None:
    sessions.open_session(db, engine, me.visitor, None, liked, study.n, resume=False,
                          participant=me)


def _viewed(db: Database, me: Participant, page: str) -> None:
    """Log a participant's view of a study page (committed before the page is sent)."""
    with db.write() as s:
        queries.log(s, None, EventType.page_view, [], participant=me, page=page)
        s.commit()


@router.get("/{slug}/steer")
async def steer(request: Request, slug: str, db: DbDep, engine: EngineDep) -> Response:
    study, me = _participant(db, slug, request)
    if me.completed_at is not None:
        return RedirectResponse(f"/study/{slug}/done", status_code=303)
    with db.read() as s:
        row = queries.participant_session(s, me)
    if row is None:
        return RedirectResponse(f"/study/{slug}/profile", status_code=303)
    screen = await run_in_threadpool(sessions.step, db, engine, row.id,
                                     known_visitor(request), None, True)
    ctx = page_context(request, screen, "study")
    ctx["study"] = study
    return TEMPLATES.TemplateResponse(request, "pages/study_steer.html", ctx)


@router.post("/{slug}/complete", dependencies=[Csrf])
def complete(request: Request, slug: str, db: DbDep) -> Response:
    study, me = _participant(db, slug, request)
    with db.write() as s:
        p = s.get(Participant, me.id)
        if p is not None and queries.participant_session(s, p) is None:
            return RedirectResponse(f"/study/{slug}/profile", status_code=303)
        if p is not None and p.completed_at is None:
            p.completed_at = utcnow()
            row = queries.participant_session(s, p)
            queries.log(s, row, EventType.complete, row.shown if row else [], participant=p)
            s.commit()
    return RedirectResponse(f"/study/{slug}/done", status_code=303)


@router.get("/{slug}/done")
def done(request: Request, slug: str, db: DbDep) -> Response:
    study, me = _participant(db, slug, request)
    if me.completed_at is None:
        return RedirectResponse(_next(db, study, me), status_code=303)
    _viewed(db, me, "done")
    return TEMPLATES.TemplateResponse(request, "pages/study_done.html", {
        "study": study, "code": me.completion_code, "layout": "study"})
