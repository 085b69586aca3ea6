"""Alembic environment: the URL from the caller's config or KNOBS_DATABASE_URL, the
metadata from app.db (tables imported so autogenerate sees them)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import pool

import app.db.tables  # noqa: F401 - registers the tables on Base.metadata
from app.db.base import Base
from app.db.session import make_engine
from app.settings import Settings

config = context.config
url = config.get_main_option("sqlalchemy.url") or Settings().database_url


def run_offline() -> None:
    context.configure(url=url, target_metadata=Base.metadata, literal_binds=True,
                      render_as_batch=True, compare_type=True)
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    engine = make_engine(url, poolclass=pool.NullPool)
    with engine.connect() as conn:
        context.configure(connection=conn, target_metadata=Base.metadata,
                          render_as_batch=True, compare_type=True)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
