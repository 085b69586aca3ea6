"""Every migration runs up and down on SQLite and on PostgreSQL, and autogenerate finds
no drift between the migrations and the tables in app/db/tables.py."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect

from app.db.base import Base
from app.db.session import Database, DatabaseError, alembic_config, make_engine
from app.db.tables import EventType
from tests.app.conftest import postgres_database


@pytest.fixture(params=["sqlite", "postgres"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'knobs.db'}"
    else:
        with postgres_database() as pg:
            yield pg


def tables(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_every_migration_up_and_down(url: str) -> None:
    cfg = alembic_config(url)
    revisions = list(ScriptDirectory.from_config(cfg).walk_revisions("base", "heads"))
    assert revisions
    for rev in reversed(revisions):                    # one step at a time, up...
        command.upgrade(cfg, rev.revision)
        assert Database(url).revision() == rev.revision
    assert set(Base.metadata.tables) <= tables(url)
    for rev in revisions:                              # ...and down again
        command.downgrade(cfg, rev.down_revision or "base")
    assert tables(url) <= {"alembic_version"}
    command.upgrade(cfg, "head")
    Database(url).check_migrated()


def test_autogenerate_finds_no_drift(url: str) -> None:
    command.upgrade(alembic_config(url), "head")
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"compare_type": True})
            diff = compare_metadata(ctx, Base.metadata)
            conn.rollback()
    finally:
        engine.dispose()
    assert diff == []


def test_the_event_type_check_allows_exactly_the_event_types(url: str) -> None:
    """compare_metadata does not see an enum's values: check the constraint itself."""
    command.upgrade(alembic_config(url), "head")
    engine = make_engine(url)
    try:
        checks = inspect(engine).get_check_constraints("events")
    finally:
        engine.dispose()
    text = next(c["sqltext"] for c in checks if c["name"] == "ck_events_event_type")
    assert sorted(re.findall(r"'(\w+)'", text)) == sorted(t.value for t in EventType)


def test_an_unmigrated_database_is_refused_with_what_to_run(url: str) -> None:
    with pytest.raises(DatabaseError, match=r"revision none, the code needs \w+: run "
                                            r"`alembic upgrade head`"):
        Database(url).check_migrated()
