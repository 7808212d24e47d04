"""`GET /api/v1/admin/analytics` and the app's wiring (issue 18): administrators read the
rollups (every answer checked against the contract), others get 403, a bad range 400; each
request is counted in memory and never written on its own; what an app counted is flushed when
it stops; the rollup runs as a job."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, date, datetime

from sqlalchemy import event, select

from jobs.analytics import ROLLUP_KIND
from persistence.analytics.models import ActiveUser, RequestCount
from persistence.unit_of_work import UnitOfWork
from server import analytics as analytics_wiring
from services import analytics
from services import jobs as job_services
from services.clock import FrozenClock
from tests.helpers import (
    ContractClient,
    app_client,
    assert_problem,
    migrated_database,
    postgres_url_in_environment,
    register_and_login,
    run_job,
)

PATH = "/api/v1/admin/analytics"
VALIDATION = "/problems/validation-error"


def _at(day: date, hour: int = 12) -> float:
    return datetime(day.year, day.month, day.day, hour, tzinfo=UTC).timestamp()


def test_an_administrator_reads_the_rolled_up_days(client: ContractClient, admin, new_uow):
    day = date(2025, 8, 1)
    stats = analytics.RequestStats(now=lambda: _at(day))
    for _ in range(19):
        stats.record("listTasks", 200, 0.0008, str(uuid.uuid4()))
    stats.record("listTasks", 500, 0.0008, None)
    analytics.flush(unit_of_work=new_uow, stats=stats)
    clock = FrozenClock(datetime(2025, 8, 2, 1, tzinfo=UTC))
    with new_uow() as uow:
        analytics.roll_up(uow=uow, clock=clock, retention_days=400)
    answer = client.get(PATH, headers=admin.headers, params={"since": "2025-07-31", "until": "2025-08-02"})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["since"], body["until"]) == ("2025-07-31", "2025-08-02")
    first = body["days"][0]
    assert {key: first[key] for key in ("day", "requests", "errors_4xx", "errors_5xx", "active_users")} == {
        "day": "2025-08-01",
        "requests": 20,
        "errors_4xx": 0,
        "errors_5xx": 1,
        "active_users": 19,
    }
    # 20 requests in (0.5, 1] ms: rank 19 of 20 → 500 + 500 * 19/20 µs.
    assert first["operations"] == [
        {"operation_id": "listTasks", "requests": 20, "errors_4xx": 0, "errors_5xx": 1, "p95_ms": 0.975}
    ]
    assert first["rolled_up_at"] == "2025-08-02T01:00:00.000000Z"
    assert [entry["day"] for entry in body["days"]] == ["2025-08-01", "2025-08-02"]  # 07-31: no rollup


def test_a_user_is_refused(client: ContractClient, account):
    assert_problem(client.get(PATH, headers=account.headers), 403, "/problems/forbidden")


def test_a_bad_range_is_a_validation_problem(client: ContractClient, admin):
    for params in (
        {"since": "2025-08-02", "until": "2025-08-01"},
        {"since": "2024-01-01", "until": "2025-01-01"},
        {"since": "2025-02-30"},
        {"until": "yesterday"},
    ):
        assert_problem(client.get(PATH, headers=admin.headers, params=params), 400, VALIDATION)


def test_the_default_range_is_the_last_30_days(client: ContractClient, admin):
    answer = client.get(PATH, headers=admin.headers)
    assert answer.status_code == 200, answer.text
    since, until = (date.fromisoformat(answer.json()[key]) for key in ("since", "until"))
    assert (until - since).days == 29


def test_requests_are_counted_in_memory_and_never_written_one_by_one(app, client: ContractClient, monkeypatch):
    account = register_and_login(client)
    stats = app.app.extensions[analytics_wiring.EXTENSION].stats
    recorded: list[tuple[str, int, str | None]] = []
    record = stats.record

    def spy(operation_id: str, status: int, seconds: float, user_id: str | None) -> None:
        recorded.append((operation_id, status, user_id))
        record(operation_id, status, seconds, user_id)

    monkeypatch.setattr(stats, "record", spy)
    statements: list[str] = []
    engine = app.app.extensions["charter"].engine

    def seen(_conn, _cursor, statement, _parameters, _context, _executemany) -> None:
        if threading.current_thread().name != "analytics-flush":  # the periodic flush may run meanwhile
            statements.append(statement)

    event.listen(engine, "before_cursor_execute", seen)
    try:
        for _ in range(5):
            assert client.get("/api/v1/auth/me", headers=account.headers).status_code == 200
        assert client.get("/api/v1/health/live").status_code == 200
    finally:
        event.remove(engine, "before_cursor_execute", seen)
    assert recorded == [("getCurrentUser", 200, account.id)] * 5 + [("getLiveness", 200, None)]
    assert statements  # the session checks ran …
    assert not [text for text in statements if "analytics" in text]  # … but no analytics write


def test_an_app_flushes_what_it_counted_when_it_stops(tmp_path, openapi):
    with migrated_database(postgres_url_in_environment(), sqlite_dir=tmp_path, prefix="charter_analytics") as url:
        with app_client(url, tmp_path / "var", openapi, analytics_flush_seconds=3600) as (app, client):
            account = register_and_login(client)
            for _ in range(3):
                client.get("/api/v1/auth/me", headers=account.headers)
            for _ in range(4):
                client.get("/api/v1/health/live")
            session_factory = app.app.extensions["charter"].session_factory
            with UnitOfWork(session_factory) as uow:  # nothing written yet: the interval is an hour
                assert uow.session.scalars(select(RequestCount)).all() == []
        # The app's lifespan ended with a last flush (its engine is disposed; a new one reads).
        from persistence.database import make_engine, make_session_factory

        engine = make_engine(url)
        try:
            with UnitOfWork(make_session_factory(engine)) as uow:
                counts = {row.operation_id: row.requests for row in uow.session.scalars(select(RequestCount))}
                users = [str(user) for user in uow.session.scalars(select(ActiveUser.user_id))]
        finally:
            engine.dispose()
    assert counts["getCurrentUser"] == 3
    assert counts["getLiveness"] == 4
    assert users == [account.id]


def test_the_rollup_runs_as_a_job(app, new_uow):
    context = app.app.extensions["charter"]
    with new_uow() as uow:
        job = job_services.enqueue(uow=uow, clock=context.clock, engine=context.jobs, kind=ROLLUP_KIND, owner_id=None)
    report = run_job(app, str(job.id))
    assert report.outcome is job_services.Outcome.SUCCEEDED, report.error
    with new_uow() as uow:
        stored = uow.jobs.get(job.id)
    assert stored is not None and stored.status == "succeeded"
    today = context.clock.now().date()
    assert today.isoformat() in stored.result["days"]
