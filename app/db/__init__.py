"""The database: SQLAlchemy 2 tables (tables.py), engine and sessions (session.py), the
queries the routes share (queries.py). Migrations live in migrations/ (Alembic)."""
