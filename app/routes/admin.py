"""Admin: sign in with KNOBS_ADMIN_TOKEN; studies, their participants and event exports
(CSV, JSON); editorial presets. Every route but the sign-in form needs the token."""

from __future__ import annotations

import csv
import io
import json
import re
import time
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Form, Path, Request
from fastapi.responses import RedirectResponse
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from starlette.responses import Response

from app import knobstate
from app.db import queries
from app.db.tables import Event, Participant, Preset, Study
from app.deps import Admin, Csrf, DbDep, EngineDep, VisitorDep
from app.htmx import TEMPLATES
from app.routes.pages import PageError
from app.security import (
    ADMIN_AGE,
    ADMIN_COOKIE,
    admin_cookie,
    cookie_header,
    csrf_token,
    known_visitor,
    same,
)

router = APIRouter(prefix="/admin", tags=["admin"], include_in_schema=False)
CONDITION = re.compile(r"^\s*([a-z0-9][a-z0-9_-]{0,63})\s*=\s*(sliders|buttons|none)\s*$")


def _csrf(request: Request) -> str:
    return csrf_token(request.app.state.secret, known_visitor(request) or "")


@router.get("/login")
def login_page(request: Request, visitor: VisitorDep) -> Response:
    enabled = bool(request.app.state.settings.admin_token)
    return TEMPLATES.TemplateResponse(request, "pages/admin_login.html", {
        "enabled": enabled, "csrf": csrf_token(request.app.state.secret, visitor)},
        status_code=200 if enabled else 403)


@router.post("/login", dependencies=[Csrf])
def login(request: Request, token: Annotated[str, Form(max_length=512)]) -> Response:
    expected: str | None = request.app.state.settings.admin_token
    if not expected:
        raise PermissionError("admin is disabled: the server has no KNOBS_ADMIN_TOKEN")
    if not same(token, expected):
        raise PermissionError("admin: wrong token")
    with request.app.state.db.write() as s:
        epoch = queries.secret(s, "admin-epoch")
    response = RedirectResponse("/admin", status_code=303)
    response.headers.append("set-cookie", cookie_header(
        ADMIN_COOKIE, admin_cookie(request.app.state.secret, expected, epoch, int(time.time())),
        request.app.state.settings.cookie_secure, max_age=ADMIN_AGE).decode("latin-1"))
    return response


@router.post("/logout", dependencies=[Admin, Csrf])
def logout(db: DbDep) -> Response:
    """Sign out everywhere: every admin cookie issued so far stops working."""
    with db.write() as s:
        queries.rotate_secret(s, "admin-epoch")
        s.commit()
    response = RedirectResponse("/admin/login", status_code=303)
    response.delete_cookie(ADMIN_COOKIE, path="/")
    return response


@router.get("", dependencies=[Admin])
def home(request: Request, db: DbDep, visitor: VisitorDep) -> Response:
    with db.read() as s:
        studies = list(s.scalars(select(Study).order_by(Study.id)))
        counts = s.execute(select(Participant.study_id, Participant.condition, func.count())
                           .group_by(Participant.study_id, Participant.condition)).all()
        presets = list(s.scalars(select(Preset).order_by(Preset.id)))
    per: dict[int, dict[str, int]] = {}
    for sid, cond, count in counts:
        per.setdefault(sid, {})[cond] = count
    names = {st.id: st.slug for st in studies}
    return TEMPLATES.TemplateResponse(request, "pages/admin.html", {
        "studies": studies, "per": per, "presets": presets, "names": names,
        "csrf": csrf_token(request.app.state.secret, visitor)})


def text(field: str, value: str) -> str:
    """A stripped, non-empty form text without NUL characters; PageError naming `field`."""
    value = value.strip()
    if not value or "\x00" in value:
        raise PageError(f"{field}: must be non-empty text")
    return value


def commit(s: Session, what: str) -> None:
    """Commit; a unique name taken meanwhile is a PageError naming it, not a 500."""
    try:
        s.commit()
    except IntegrityError:
        s.rollback()
        raise PageError(f"{what} exists already") from None


def parse_conditions(text: str) -> list[dict[str, Any]]:
    """'name = sliders | buttons | none' per line -> condition dicts; PageError naming
    the bad line."""
    out: list[dict[str, Any]] = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        m = CONDITION.match(line)
        if m is None:
            raise PageError(f"conditions: line {n} {line[:60]!r} is not "
                            "'name = sliders | buttons | none'")
        name, control = m.groups()
        if name in {c["name"] for c in out}:
            raise PageError(f"conditions: {name!r} twice")
        out.append({"name": name, "knobs": control != "none",
                    "control": "sliders" if control == "none" else control})
    if not out:
        raise PageError("conditions: give at least one")
    return out


@router.post("/studies", dependencies=[Admin, Csrf])
def create_study(db: DbDep, slug: Annotated[str, Form(max_length=64)],
                 title: Annotated[str, Form(min_length=1, max_length=200)],
                 consent: Annotated[str, Form(min_length=1, max_length=20000)],
                 conditions: Annotated[str, Form(max_length=4000)],
                 n: Annotated[int, Form(ge=1, le=100)] = 10) -> Response:
    if not queries.SLUG.fullmatch(slug):
        raise PageError("slug: lowercase letters, digits and '-', at most 64")
    conds = parse_conditions(conditions)
    title, consent = text("title", title), text("consent", consent)
    with db.write() as s:
        if s.scalars(select(Study).where(Study.slug == slug)).first() is not None:
            raise PageError(f"slug: a study {slug!r} exists already")
        s.add(Study(slug=slug, title=title, consent=consent, conditions=conds, n=n))
        commit(s, f"slug: a study {slug!r}")
    return RedirectResponse(f"/admin/studies/{slug}", status_code=303)


@router.get("/studies/{slug}", dependencies=[Admin])
def study_page(request: Request, slug: str, db: DbDep) -> Response:
    with db.read() as s:
        study = queries.study(s, slug)
        rows = s.execute(
            select(Participant, func.count(Event.id))
            .outerjoin(Event, Event.participant_id == Participant.id)
            .where(Participant.study_id == study.id)
            .group_by(Participant.id).order_by(Participant.id)).tuples().all()
    return TEMPLATES.TemplateResponse(request, "pages/admin_study.html", {
        "study": study, "rows": rows, "csrf": _csrf(request)})


@router.post("/studies/{slug}/active", dependencies=[Admin, Csrf])
def study_active(slug: str, db: DbDep, active: Annotated[bool, Form()]) -> Response:
    with db.write() as s:
        queries.study(s, slug).active = active
        s.commit()
    return RedirectResponse(f"/admin/studies/{slug}", status_code=303)


EXPORT_FIELDS = ["id", "at", "type", "page", "participant", "participant_external_id", "condition",
                 "session", "knob", "value", "direction", "item", "shown"]


@router.get("/studies/{slug}/events.{fmt}", dependencies=[Admin])
def export(slug: str, fmt: Literal["csv", "json"], db: DbDep) -> Response:
    """Every event of the study's participants, oldest first; `shown` is the list of
    item ids on screen after the event (space-separated in CSV)."""
    with db.read() as s:
        events = queries.study_events(s, queries.study(s, slug))
    headers = {"Content-Disposition": f'attachment; filename="{slug}-events.{fmt}"'}
    if fmt == "json":
        return Response(json.dumps(events), media_type="application/json", headers=headers)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, EXPORT_FIELDS)
    writer.writeheader()
    for e in events:
        writer.writerow({k: _cell(v) for k, v in e.items()} |
                        {"shown": " ".join(str(i) for i in e["shown"])})
    return Response(buf.getvalue(), media_type="text/csv; charset=utf-8", headers=headers)


def _cell(value: object) -> object:
    """A CSV cell a spreadsheet will not run: text starting with = + - @ (or a tab or
    carriage return) gets a leading apostrophe."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


@router.post("/presets", dependencies=[Admin, Csrf])
def create_preset(db: DbDep, engine: EngineDep,
                  name: Annotated[str, Form(min_length=1, max_length=100)],
                  targets: Annotated[str, Form(min_length=1, max_length=2000)],
                  alpha: Annotated[float, Form(ge=0.0, le=1.0)],
                  direction: Annotated[Literal["more", "less"], Form()] = "more",
                  scope: Annotated[str, Form(max_length=130)] = "everyone") -> Response:
    """A named knob: `targets` are concepts or '#<neuron>' separated by commas; `scope`
    'everyone' or '<study>/<condition>'."""
    name = text("name", name)
    keys = []
    for t in (x.strip() for x in targets.split(",")):
        if t:
            neuron = t[1:].isascii() and t[1:].isdigit() and len(t) < 11
            keys.append(f"n:{int(t[1:])}" if t.startswith("#") and neuron
                        else knobstate.canonical(f"c:{t}"))
    if not keys:
        raise PageError("targets: name at least one concept or #neuron")
    knobstate.target_neurons(engine, keys)            # NotFound names an unknown one
    with db.write() as s:
        study_id, condition = None, None
        if scope != "everyone":
            slug, _, condition = scope.partition("/")
            study = queries.study(s, slug)
            conds = {c["name"]: c for c in study.conditions}
            if condition not in conds:
                raise PageError(f"scope: study {slug!r} has no condition {condition!r}")
            if not conds[condition]["knobs"]:
                raise PageError(f"scope: condition {condition!r} of {slug!r} shows no knobs")
            study_id = study.id
        if s.scalars(select(Preset).where(Preset.name == name)).first() is not None:
            raise PageError(f"name: a preset {name!r} exists already")
        s.add(Preset(name=name, targets=keys, alpha=alpha, direction=direction,
                     study_id=study_id, condition=condition or None))
        commit(s, f"name: a preset {name!r}")
    return RedirectResponse("/admin", status_code=303)


@router.post("/presets/{preset_id}/active", dependencies=[Admin, Csrf])
def preset_active(db: DbDep, preset_id: Annotated[int, Path(ge=1, le=2**31 - 1)],
                  active: Annotated[bool, Form()]) -> Response:
    """Switch a preset on or off for new screens (screens that have it keep it)."""
    with db.write() as s:
        preset = s.get(Preset, preset_id)
        if preset is None:
            raise queries.Missing(f"unknown preset {preset_id}")
        preset.active = active
        s.commit()
    return RedirectResponse("/admin", status_code=303)
