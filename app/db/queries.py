"""The database reads and writes the routes share. Functions take a Session and leave
committing to the caller: an event is acknowledged only after the caller's commit."""

from __future__ import annotations

import re
import secrets
from collections.abc import Sequence
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import Select, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.db.tables import (
    Event,
    EventType,
    Participant,
    Preset,
    Profile,
    Secret,
    SteerSession,
    Study,
    utcnow,
)
from app.security import new_token, same

TOKEN = re.compile(r"[A-Za-z0-9_-]{1,64}")
"""What session, profile and permalink ids look like (new_token)."""
SLUG = re.compile(r"[a-z0-9][a-z0-9-]{0,63}")
"""What a study slug looks like."""


T = TypeVar("T")


class Missing(LookupError):
    """A row that is not there, or not this visitor's (the message names it)."""


def secret(db_session: Session, name: str = "cookie") -> str:
    """The named server secret, generated once; every replica reads the same one."""
    row = db_session.get(Secret, name)
    if row is not None:
        return row.value
    db_session.add(Secret(name=name, value=secrets.token_urlsafe(48)))
    try:
        db_session.commit()
    except IntegrityError:          # another replica made it first
        db_session.rollback()
    row = db_session.get(Secret, name)
    assert row is not None
    return row.value


def rotate_secret(db_session: Session, name: str) -> None:
    """A new value for the named secret (committed by the caller)."""
    db_session.merge(Secret(name=name, value=secrets.token_urlsafe(48)))


def owned_session(s: Session, sid: str, visitor: str | None, lock: bool = False
                  ) -> SteerSession:
    """The visitor's session `sid`; Missing otherwise (another's reads as unknown)."""
    row = _one(s, select(SteerSession).where(SteerSession.id == sid), lock) \
        if TOKEN.fullmatch(sid) else None
    if row is None or visitor is None or not same(row.visitor, visitor):
        raise Missing(f"unknown session {sid[:64]!r}")
    return row


def _one(s: Session, q: Select[tuple[T]], lock: bool) -> T | None:
    """The first row of `q`, locked FOR UPDATE if `lock` (SQLite ignores it: its writes
    are serialised anyway)."""
    return s.scalars(q.with_for_update() if lock else q).first()


def latest_session(s: Session, visitor: str, user_id: int | None, items: Sequence[int] | None
                   ) -> SteerSession | None:
    """The visitor's most recent session on the same subject outside any study."""
    q = select(SteerSession).where(SteerSession.visitor == visitor,
                                   SteerSession.participant_id.is_(None))
    if user_id is not None:
        q = q.where(SteerSession.user_id == user_id)
    else:
        q = q.join(Profile, Profile.id == SteerSession.profile_id)
    for row in s.scalars(q.order_by(SteerSession.updated_at.desc()).limit(50)):
        if user_id is not None:
            return row
        profile = s.get(Profile, row.profile_id)
        if profile is not None and profile.items == list(items or []):
            return row
    return None


def new_session(s: Session, visitor: str, user_id: int | None, items: Sequence[int] | None,
                n: int, knobs: list[dict[str, Any]], participant: Participant | None = None
                ) -> SteerSession:
    profile_id = None
    if user_id is None:
        profile = Profile(id=new_token(), items=list(items or []))
        s.add(profile)
        profile_id = profile.id
    row = SteerSession(id=new_token(), visitor=visitor, user_id=user_id,
                       profile_id=profile_id, n=n, knobs=knobs, presets_seen=[], shown=[],
                       participant_id=participant.id if participant else None,
                       condition=participant.condition if participant else None)
    s.add(row)
    return row


def profile_items(s: Session, row: SteerSession) -> list[int] | None:
    if row.profile_id is None:
        return None
    profile = s.get(Profile, row.profile_id)
    return list(profile.items) if profile else None


def log(s: Session, row: SteerSession | None, type_: EventType, shown: Sequence[int],
        knob: str | None = None, value: float | None = None, direction: str | None = None,
        item: int | None = None, participant: Participant | None = None,
        at: datetime | None = None, page: str | None = None) -> Event:
    """Add one event row (committed by the caller)."""
    event = Event(at=at or utcnow(), session_id=row.id if row else None,
                  participant_id=row.participant_id if row else
                  (participant.id if participant else None),
                  condition=row.condition if row else
                  (participant.condition if participant else None),
                  type=type_, knob=knob, value=value, direction=direction, item=item,
                  shown=list(shown), page=page)
    s.add(event)
    return event


def presets_for(s: Session, study_id: int | None, condition: str | None) -> list[Preset]:
    """Active presets for a screen: those for everyone outside studies; inside a study
    only those of its condition (a study controls what each condition sees)."""
    q = select(Preset).where(Preset.active.is_(True))
    if study_id is not None:
        q = q.where(Preset.study_id == study_id, Preset.condition == condition)
    else:
        q = q.where(Preset.study_id.is_(None))
    return list(s.scalars(q.order_by(Preset.id)))


def presets_by_id(s: Session, ids: Sequence[int]) -> list[Preset]:
    if not ids:
        return []
    return list(s.scalars(select(Preset).where(Preset.id.in_(list(ids)))))


def study(s: Session, slug: str, lock: bool = False) -> Study:
    row = _one(s, select(Study).where(Study.slug == slug), lock) \
        if SLUG.fullmatch(slug) else None
    if row is None:
        raise Missing(f"unknown study {slug[:64]!r}")
    return row


def participant(s: Session, study_row: Study, visitor: str | None) -> Participant | None:
    if visitor is None:
        return None
    return s.scalars(select(Participant).where(Participant.study_id == study_row.id,
                                               Participant.visitor == visitor)).first()


def assign(s: Session, study_row: Study, visitor: str, external_id: str | None
           ) -> Participant:
    """A new participant in the condition with the fewest so far (ties: the first
    listed). The caller holds the study row locked (FOR UPDATE / BEGIN IMMEDIATE), so
    concurrent consents cannot both take the same slot."""
    counts = dict(s.execute(select(Participant.condition, func.count())
                            .where(Participant.study_id == study_row.id)
                            .group_by(Participant.condition)).tuples().all())
    names = [c["name"] for c in study_row.conditions]
    condition = min(names, key=lambda c: (counts.get(c, 0), names.index(c)))
    row = Participant(study_id=study_row.id, visitor=visitor, external_id=external_id,
                      condition=condition, completion_code=completion_code())
    s.add(row)
    s.flush()
    return row


CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
"""Completion codes: no 0/O or 1/I to misread."""


def completion_code(length: int = 10) -> str:
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(length))


def participant_session(s: Session, p: Participant) -> SteerSession | None:
    return s.scalars(select(SteerSession).where(SteerSession.participant_id == p.id)
                     .order_by(SteerSession.created_at.desc())).first()


def study_events(s: Session, study_row: Study) -> list[dict[str, Any]]:
    """Every event of the study's participants, oldest first, as plain rows."""
    q = (select(Event, Participant.external_id)
         .join(Participant, Participant.id == Event.participant_id)
         .where(Participant.study_id == study_row.id).order_by(Event.id))
    return [{"id": e.id, "at": e.at.isoformat(), "type": e.type.value, "page": e.page,
             "participant": e.participant_id, "participant_external_id": ext,
             "condition": e.condition, "session": e.session_id, "knob": e.knob,
             "value": e.value, "direction": e.direction, "item": e.item,
             "shown": list(e.shown)}
            for e, ext in s.execute(q).tuples()]
