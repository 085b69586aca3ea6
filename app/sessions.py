"""Steering sessions: open one, change its knobs, view it, click an item, freeze it as a
permalink. Shared by the pages, the study pages and the JSON API.

Each change is read → compute → write: the session is read, the new screen computed on
the engine outside any transaction, then one write transaction checks that the session's
version is still the one read (else starts again), stores the knobs and the list shown,
and adds the typed events. The caller answers only after that commit: an acknowledged
event is a committed one."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from app import knobstate, service
from app.db import queries
from app.db.session import Database
from app.db.tables import (
    EventType,
    Participant,
    Permalink,
    Preset,
    SteerSession,
    Study,
    utcnow,
)
from app.engine import Engine, UserState
from app.knobstate import Entry, KnobRow, PresetInfo
from app.security import new_token

SEED_KNOBS = 8
"""Knobs seeded from the user's own code: their most active neurons."""
FREE = {"name": None, "knobs": True, "control": "sliders"}
"""Outside a study: knobs shown, as sliders."""
RETRIES = 8


class Conflict(RuntimeError):
    """The session kept changing under us (answered 409)."""


Edit = Callable[[list[Entry], UserState, set[str]], tuple[list[Entry], EventType | None]]
"""(knobs before, the subject's state, keys of presets just added) -> (knobs after, a
single event type that replaces the per-knob changes, e.g. reset)."""


@dataclass
class Screen:
    """A session as a screen shows it, after the step that produced it."""

    id: str
    user: int | None
    items: list[int] | None
    n: int
    entries: list[Entry]
    rows: list[KnobRow]
    view: dict[str, Any]
    history: list[int]
    condition: dict[str, Any]
    study: str | None
    events: list[int] = field(default_factory=list)
    title: str | None = None
    """The study's title, on a study screen."""

    @property
    def shown(self) -> list[int]:
        return [i["id"] for i in self.view["steered"]]


def state_of(engine: Engine, user: int | None, items: Sequence[int] | None) -> UserState:
    if user is not None:
        return engine.user(service.user_index(engine, user))
    return engine.profile(service.item_indices(engine, list(items or [])))


def open_session(db: Database, engine: Engine, visitor: str, user: int | None,
                 items: Sequence[int] | None, n: int = 20,
                 knobs: Sequence[Entry] | None = None, resume: bool = True,
                 participant: Participant | None = None) -> str:
    """The id of the visitor's session on this subject: their latest one (`resume`, no
    `knobs` given), else a new one seeded with `knobs` or the subject's own top knobs."""
    state = state_of(engine, user, items)       # NotFound for unknown ids, before writing
    if knobs:
        if any(k.key.startswith("p:") for k in knobs):
            raise knobstate.KnobError("key: presets come from the editors, not with a new "
                                      "session")
        knobstate.resolve(engine, knobs, {})
    with db.write() as s:
        if participant is not None:     # one session per participant, a double submit too
            s.get(Participant, participant.id, with_for_update=True)
            row = queries.participant_session(s, participant)
            if row is not None:
                return row.id
        if resume and not knobs and participant is None:
            row = queries.latest_session(s, visitor, user, items)
            if row is not None:
                return row.id
        entries = list(knobs) if knobs else knobstate.seed(state, SEED_KNOBS)
        row = queries.new_session(s, visitor, user, items, n, knobstate.to_json(entries),
                                  participant)
        s.commit()
        return row.id


def study_of(db: Database, sid: str, visitor: str | None) -> str | None:
    """The slug of the study the visitor's session `sid` belongs to, if any."""
    with db.read() as s:
        _, study = _condition(s, queries.owned_session(s, sid, visitor))
    return study.slug if study else None


def _condition(s: Session, row: SteerSession) -> tuple[dict[str, Any], Study | None]:
    if row.participant_id is None:
        return FREE, None
    p = s.get(Participant, row.participant_id)
    study = s.get(Study, p.study_id) if p else None
    if study is None:
        return FREE, None
    for c in study.conditions:
        if c["name"] == row.condition:
            return c, study
    return FREE, study


def step(db: Database, engine: Engine, sid: str, visitor: str | None,
         edit: Edit | None = None, view: bool = False) -> Screen:
    """Apply `edit` (None: no change) to the session, log what changed (and a page view
    if `view`), and return the screen; Missing if it is not this visitor's session,
    KnobError / NotFound for bad knobs, Conflict if it kept changing under us."""
    for _ in range(RETRIES):
        with db.read() as s:
            row = queries.owned_session(s, sid, visitor)
            version, user, n = row.version, row.user_id, row.n
            items = queries.profile_items(s, row)
            condition, study = _condition(s, row)
            knobs_on = bool(condition.get("knobs", True))
            if edit is not None and not knobs_on:
                raise knobstate.KnobError("knobs: this screen has none to change")
            presets = queries.presets_for(s, study.id if study else None, row.condition) \
                if knobs_on else []
            state = state_of(engine, user, items)
            before, added, base, after, special = _edited(row, presets, edit, state)
            preset_ids = [int(e.key[2:]) for e in after if e.key.startswith("p:")]
            info = {p.id: PresetInfo(p.id, p.name, tuple(p.targets))
                    for p in queries.presets_by_id(s, preset_ids)}
        shown_rows = knobstate.resolve(engine, after, info)
        screen_view = knobstate.screen(engine, state, shown_rows if knobs_on else [], n)
        shown = [i["id"] for i in screen_view["steered"]]
        with db.write() as s:
            row = queries.owned_session(s, sid, visitor, lock=True)
            if row.version != version:
                # changed since we read it: the screen still holds if the edit gives the
                # same knobs from the new state (a full-state form does); else again
                before, added_now, base, after_now, special = _edited(row, presets, edit,
                                                                     state)
                if after_now != after or added_now != added:
                    continue
            events = [queries.log(s, row, EventType.preset_shown, shown, knob=e.key,
                                  value=e.alpha, direction=e.direction) for e in added]
            if special is not None:
                events.append(queries.log(s, row, special, shown))
            else:
                events += [queries.log(s, row, t, shown, knob=k, value=v, direction=d)
                           for t, k, v, d in knobstate.changes(base, after)]
            if view:
                events.append(queries.log(s, row, EventType.page_view, shown, page="steer"))
            if added or after != before or shown != row.shown:
                row.knobs = knobstate.to_json(after)
                row.presets_seen = [*row.presets_seen, *(int(e.key[2:]) for e in added)]
                row.shown = shown
                row.version += 1
                row.updated_at = utcnow()
            s.flush()
            ids = [e.id for e in events]
            s.commit()
        return Screen(sid, user, items, n, after, shown_rows, screen_view,
                      [int(i) for i in state.inputs], condition,
                      study.slug if study else None, ids, study.title if study else None)
    raise Conflict(f"session {sid[:64]!r} is changing too fast; try again")


def _edited(row: SteerSession, presets: Sequence[Preset], edit: Edit | None,
            state: UserState) -> tuple[list[Entry], list[Entry], list[Entry], list[Entry],
                                       EventType | None]:
    """(knobs stored, presets to add, stored + added, after the edit, special event)."""
    before = knobstate.from_json(row.knobs)
    keys = {e.key for e in before}
    added = [Entry(f"p:{p.id}", p.alpha, p.direction) for p in presets
             if p.id not in row.presets_seen and f"p:{p.id}" not in keys]
    base = before + added
    after, special = edit(base, state, {e.key for e in added}) if edit else (base, None)
    offered = {e.key for e in base} | {f"p:{p.id}" for p in presets}
    foreign = [e.key for e in after if e.key.startswith("p:") and e.key not in offered]
    if foreign:             # presets are the editors' to hand out, per screen
        raise knobstate.KnobError(f"key: preset {foreign[0]} is not offered on this screen")
    return before, added, base, after, special


def form_edit(entries: list[Entry] | None, add: str | None = None,
              remove: str | None = None, nudge: str | None = None,
              reset: bool = False) -> Edit:
    """The edit a knob form makes: its full state (`entries`, None if the form did not
    send it), then add / remove / nudge, or a reset."""

    def apply(base: list[Entry], state: UserState, fresh: set[str]
              ) -> tuple[list[Entry], EventType | None]:
        if reset:
            own = knobstate.seed(state, SEED_KNOBS)
            keep = [Entry(e.key, 0.0, "more") for e in base
                    if e.key.startswith("p:") and e.key not in {o.key for o in own}]
            return own + keep, EventType.reset
        out = base if entries is None else entries + [
            e for e in base if e.key in fresh and e.key not in {x.key for x in entries}]
        return knobstate.edit(out, add=add, remove=remove, nudge=nudge), None

    return apply


def click(db: Database, sid: str, visitor: str | None, item: int) -> int:
    """Log a click on `item` of the list the session shows; the event id."""
    with db.write() as s:
        row = queries.owned_session(s, sid, visitor, lock=True)
        if item not in row.shown:
            raise service.NotFound(f"item {item} is not on this screen")
        event = queries.log(s, row, EventType.item_click, row.shown, item=item)
        s.flush()
        event_id = event.id
        s.commit()
    return event_id


def freeze(db: Database, engine: Engine, screen: Screen, layout: str) -> str:
    """A permalink for the screen: bundle hash, subject, knobs (preset names and targets
    as they are now), n, layout, controls and the ids shown. A study screen is frozen
    as the participant saw it: the study layout, its controls, its title."""
    # every knob's label, kind and neuron set as resolved now: a later change to how a
    # concept or preset resolves cannot change the frozen screen
    labels = {r.key: {"name": r.label, "kind": r.kind, "neuron": r.neuron,
                      "neurons": r.neurons} for r in screen.rows}
    entries = screen.entries
    if screen.study is not None:
        layout = "study"
    if not screen.condition.get("knobs", True):       # a list without knobs stays so
        entries, layout = [], "list"
    with db.write() as s:
        link = Permalink(id=new_token(), bundle_sha256=engine.bundle.sha256,
                         user_id=screen.user, items=list(screen.items or []),
                         knobs=knobstate.to_json(entries), labels=labels,
                         n=screen.n, layout=layout, shown=screen.shown,
                         control=str(screen.condition.get("control", "sliders")),
                         title=screen.title)
        s.add(link)
        s.commit()
        return link.id


def thaw(db: Database, engine: Engine, link_id: str) -> tuple[Permalink, Screen]:
    """The permalink's screen, recomputed; NotFound if unknown, Stale if the bundle or
    the list differs from the one recorded."""
    with db.read() as s:
        link = s.get(Permalink, link_id) if queries.TOKEN.fullmatch(link_id) else None
    if link is None:
        raise service.NotFound(f"unknown permalink {link_id[:64]!r}")
    if link.bundle_sha256 != engine.bundle.sha256:
        raise Stale(f"permalink {link.id} was made with bundle {link.bundle_sha256[:12]}; "
                    f"this server serves {engine.bundle.sha256[:12]}")
    entries = knobstate.from_json(link.knobs)
    # knobs exactly as they were frozen (links made before neuron sets were stored
    # resolve their neuron and concept knobs again)
    rows = [KnobRow(e.key, e.alpha, e.direction, v["name"], v.get("kind", "preset"),
                    v.get("neuron"), [int(x) for x in v["neurons"]])
            if (v := link.labels.get(e.key)) is not None
            else knobstate.resolve(engine, [e], {})[0] for e in entries]
    items = link.items or None
    state = state_of(engine, link.user_id, items)
    view = knobstate.screen(engine, state, rows, link.n)
    condition = {**FREE, "knobs": link.layout != "list", "control": link.control}
    screen = Screen(link.id, link.user_id, items, link.n, entries, rows, view,
                    [int(i) for i in state.inputs], condition, None, title=link.title)
    if screen.shown != list(link.shown):
        raise Stale(f"permalink {link.id}: this server ranks a different list than the "
                    "one recorded")
    return link, screen


class Stale(RuntimeError):
    """A permalink this server cannot reproduce exactly (answered 409)."""
