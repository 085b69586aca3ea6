"""What Knobs records: profiles, steering sessions and their knob state, the typed event
log, studies and their participants, editorial presets, permalinks.

Knob state is a JSON list of {"key", "alpha", "direction"} where key is "n:<neuron>",
"c:<concept>" or "p:<preset id>" (app/knobstate.py reads and writes it)."""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Enum,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from app.db.base import Base

# SQLite only autoincrements an INTEGER PRIMARY KEY; PostgreSQL gets a bigint
BigId = BigInteger().with_variant(Integer(), "sqlite")


def utcnow() -> datetime:
    return datetime.now(UTC)


class EventType(enum.StrEnum):
    """What a row of the event log records."""

    page_view = "page_view"
    knob_add = "knob_add"
    knob_move = "knob_move"
    knob_remove = "knob_remove"
    direction_change = "direction_change"
    reset = "reset"
    item_click = "item_click"
    preset_shown = "preset_shown"
    consent = "consent"
    complete = "complete"


class Secret(Base):
    """Server secrets generated once and shared by every replica (the cookie-signing key
    when KNOBS_SECRET_KEY is not set)."""

    __tablename__ = "secrets"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(String(128))


class Profile(Base):
    """A new visitor's liked titles (external item ids), folded in without retraining."""

    __tablename__ = "profiles"
    id: Mapped[str] = mapped_column(String(43), primary_key=True)
    items: Mapped[list[int]]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Study(Base):
    """A user study: conditions assigned per participant, balanced."""

    __tablename__ = "studies"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    title: Mapped[str] = mapped_column(String(200))
    consent: Mapped[str] = mapped_column(Text)
    conditions: Mapped[list[Any]]
    """[{"name", "knobs": bool, "control": "sliders" | "buttons"}]"""
    n: Mapped[int] = mapped_column(Integer, default=10)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Participant(Base):
    __tablename__ = "participants"
    __table_args__ = (UniqueConstraint("study_id", "visitor"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"),
                                          index=True)
    visitor: Mapped[str] = mapped_column(String(64))
    external_id: Mapped[str | None] = mapped_column(String(128))
    condition: Mapped[str] = mapped_column(String(64))
    completion_code: Mapped[str] = mapped_column(String(32), unique=True)
    consented_at: Mapped[datetime] = mapped_column(default=utcnow)
    completed_at: Mapped[datetime | None]


class SteerSession(Base):
    """One person steering one subject (a dataset user or a profile); autosaved."""

    __tablename__ = "steer_sessions"
    __table_args__ = (CheckConstraint("(user_id IS NULL) <> (profile_id IS NULL)",
                                      name="one_subject"),)
    id: Mapped[str] = mapped_column(String(43), primary_key=True)
    visitor: Mapped[str] = mapped_column(String(64), index=True)
    user_id: Mapped[int | None] = mapped_column(Integer)
    profile_id: Mapped[str | None] = mapped_column(ForeignKey("profiles.id"))
    participant_id: Mapped[int | None] = mapped_column(
        ForeignKey("participants.id", ondelete="CASCADE"), index=True)
    condition: Mapped[str | None] = mapped_column(String(64))
    n: Mapped[int] = mapped_column(Integer, default=20)
    knobs: Mapped[list[Any]]
    presets_seen: Mapped[list[int]]
    shown: Mapped[list[int]]
    """The item ids of the last list this session showed (what a click was made on)."""
    version: Mapped[int] = mapped_column(Integer, default=0)
    """Bumped on every change: a writer that read an older version starts again."""
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class Event(Base):
    """One thing that happened on a screen, with the item ids it showed afterwards."""

    __tablename__ = "events"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    session_id: Mapped[str | None] = mapped_column(
        ForeignKey("steer_sessions.id", ondelete="CASCADE"), index=True)
    participant_id: Mapped[int | None] = mapped_column(
        ForeignKey("participants.id", ondelete="CASCADE"), index=True)
    condition: Mapped[str | None] = mapped_column(String(64))
    page: Mapped[str | None] = mapped_column(String(32))
    """Which page a page_view was of: steer, profile, done."""
    type: Mapped[EventType] = mapped_column(
        Enum(EventType, native_enum=False, length=32, create_constraint=True,
             name="event_type", values_callable=lambda e: [m.value for m in e]))
    knob: Mapped[str | None] = mapped_column(String(210))
    value: Mapped[float | None] = mapped_column(Float)
    direction: Mapped[str | None] = mapped_column(String(4))
    item: Mapped[int | None] = mapped_column(Integer)
    shown: Mapped[list[int]]


class Preset(Base):
    """An editor's named knob (e.g. "documentary week"): concepts or neurons pushed
    together, shown to everyone or to one study condition as a removable knob."""

    __tablename__ = "presets"
    __table_args__ = (CheckConstraint("(study_id IS NULL) = (condition IS NULL)",
                                      name="scope"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    targets: Mapped[list[str]]
    """Knob keys "c:<concept>" / "n:<neuron>" the preset moves together."""
    alpha: Mapped[float] = mapped_column(Float)
    direction: Mapped[str] = mapped_column(String(4))
    study_id: Mapped[int | None] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"))
    condition: Mapped[str | None] = mapped_column(String(64))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Permalink(Base):
    """A steered screen frozen for screenshots: the bundle, subject, knobs, layout and the
    item ids it showed."""

    __tablename__ = "permalinks"
    id: Mapped[str] = mapped_column(String(43), primary_key=True)
    bundle_sha256: Mapped[str] = mapped_column(String(64))
    user_id: Mapped[int | None] = mapped_column(Integer)
    items: Mapped[list[int]]
    knobs: Mapped[list[Any]]
    labels: Mapped[dict[str, Any]]
    """Preset knobs' names and targets as they were (presets may change later)."""
    n: Mapped[int] = mapped_column(Integer)
    layout: Mapped[str] = mapped_column(String(16))
    """full (the site's page), study (the study screen) or list (a study screen without
    knobs)."""
    control: Mapped[str] = mapped_column(String(16))
    """sliders or buttons."""
    title: Mapped[str | None] = mapped_column(String(200))
    """The study's title on a study screen."""
    shown: Mapped[list[int]]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
