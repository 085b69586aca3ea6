#!/bin/sh
# Migrate the database, then serve; extra arguments go to uvicorn.
set -eu
alembic upgrade head
exec uvicorn app.main:create_app --factory --proxy-headers --loop asyncio \
    --http app.coalesce:CoalescingHttpTools "$@"
