"""What the per-request session check costs: `services.accounts.current_user` (one indexed
join of the session and its user, plus the `last_used_at` update that writes at most once a
minute), inside a unit of work that is open anyway, as an authenticated request runs it.

Usage: ``python -m bench.session_check [--iterations 2000]``; uses DATABASE_URL when it names
PostgreSQL (a temporary database on that server), else a temporary SQLite file.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from persistence.accounts.models import AuthSession, User
from persistence.database import make_engine, make_session_factory
from persistence.unit_of_work import UnitOfWork
from server.cli import migrate
from services.accounts import current_user
from services.clock import SystemClock
from services.tokens import AccessClaims


def _measure(url: str, iterations: int) -> tuple[float, float]:
    migrate(url)
    engine = make_engine(url)
    factory = make_session_factory(engine)
    now = datetime.now(UTC)
    user = User(
        id=uuid.uuid4(),
        email=f"bench-{uuid.uuid4().hex[:8]}@example.com",
        display_name="Bench",
        password_hash="x",
        role="user",
        status="active",
        created_at=now,
        updated_at=now,
    )
    session = AuthSession(
        id=uuid.uuid4(), user_id=user.id, created_at=now, last_used_at=now, expires_at=now.replace(year=now.year + 1)
    )
    with factory.begin() as db:
        db.add(user)
        db.flush()
        db.add(session)
    claims = AccessClaims(user_id=user.id, session_id=session.id, token_id="x", expires_at=0)
    timings = []
    clock = SystemClock()
    with UnitOfWork(factory) as uow:  # the request's unit of work is open anyway: time the check alone
        for _ in range(iterations):
            started = time.perf_counter()
            current_user(uow=uow, clock=clock, claims=claims)
            uow.session.expunge_all()  # as a new request would, read the rows again
            timings.append(time.perf_counter() - started)
    engine.dispose()
    timings.sort()
    return statistics.median(timings) * 1e6, timings[int(len(timings) * 0.99)] * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=2000)
    args = parser.parse_args()
    server = os.environ.get("DATABASE_URL", "")
    if server.startswith("postgresql"):
        name = f"charter_bench_{uuid.uuid4().hex[:8]}"
        admin = create_engine(make_url(server), isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            median, p99 = _measure(
                make_url(server).set(database=name).render_as_string(hide_password=False), args.iterations
            )
        finally:
            with admin.connect() as connection:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()
        where = "PostgreSQL"
    else:
        with tempfile.TemporaryDirectory() as tmp:
            median, p99 = _measure(f"sqlite:///{tmp}/bench.db", args.iterations)
        where = "SQLite"
    print(f"session check on {where}: median {median:.0f} µs, p99 {p99:.0f} µs per request ({args.iterations} checks)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
