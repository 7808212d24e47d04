"""The jobs API through the `client` fixture (every answer checked against the contract)."""

from __future__ import annotations

import uuid

import pytest

from persistence.unit_of_work import UnitOfWork
from services import jobs
from services.clock import SystemClock
from tests.helpers import FORBIDDEN, NOT_FOUND, assert_problem, collect_pages

STATE_CONFLICT = "/problems/job-state-conflict"


def _enqueue(app, owner_id: str | None, payload: dict | None = None) -> str:
    context = app.app.extensions["charter"]
    with UnitOfWork(context.session_factory) as uow:
        job = jobs.enqueue(
            uow=uow,
            clock=SystemClock(),
            engine=context.jobs,
            kind="maintenance.purge_expired",
            owner_id=uuid.UUID(owner_id) if owner_id else None,
            subject=jobs.Subject("document", "doc-1"),
            payload=payload,
        )
        return str(job.id)


def _fail(app, job_id: str) -> None:
    context = app.app.extensions["charter"]
    with UnitOfWork(context.session_factory) as uow:
        uow.jobs.change_if(
            uuid.UUID(job_id),
            status="failed",
            error={"type": "/problems/job-failed", "title": "Job failed", "status": 500},
        )


def test_a_user_reads_and_lists_their_own_jobs_only(app, client, account, other_account):
    mine = _enqueue(app, account.id)
    theirs = _enqueue(app, other_account.id)
    answer = client.get(f"/api/v1/jobs/{mine}", headers=account.headers)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["id"], body["status"], body["kind"], body["owner_id"]) == (
        mine,
        "queued",
        "maintenance.purge_expired",
        account.id,
    )
    assert body["subject"] == {"type": "document", "id": "doc-1"}
    assert (body["attempts"], body["max_attempts"], body["result"], body["error"]) == (0, 3, None, None)
    assert_problem(client.get(f"/api/v1/jobs/{theirs}", headers=account.headers), 404, NOT_FOUND)
    assert [job["id"] for job in collect_pages(client, "/api/v1/jobs", headers=account.headers)] == [mine]
    assert_problem(
        client.get("/api/v1/jobs", headers=account.headers, params={"owner_id": other_account.id}), 403, FORBIDDEN
    )
    own = client.get("/api/v1/jobs", headers=account.headers, params={"owner_id": account.id})
    assert [job["id"] for job in own.json()["items"]] == [mine]


def test_an_administrator_sees_every_job_and_filters_them(app, client, account, admin):
    mine = _enqueue(app, account.id)
    service = _enqueue(app, None)
    _fail(app, mine)
    every = {job["id"] for job in collect_pages(client, "/api/v1/jobs", headers=admin.headers, params={"limit": 100})}
    assert {mine, service} <= every
    assert client.get(f"/api/v1/jobs/{service}", headers=admin.headers).json()["owner_id"] is None
    failed = collect_pages(
        client, "/api/v1/jobs", headers=admin.headers, params={"status": ["failed"], "owner_id": account.id}
    )
    assert [job["id"] for job in failed] == [mine]
    by_kind = collect_pages(
        client,
        "/api/v1/jobs",
        headers=admin.headers,
        params={"kind": "maintenance.purge_expired", "owner_id": account.id},
    )
    assert [job["id"] for job in by_kind] == [mine]
    assert (
        collect_pages(
            client, "/api/v1/jobs", headers=admin.headers, params={"kind": "test.none", "owner_id": account.id}
        )
        == []
    )


def test_cancel_and_retry_follow_the_state_rules(app, client, account, other_account):
    job_id = _enqueue(app, account.id)
    assert_problem(client.post(f"/api/v1/jobs/{job_id}/retry", headers=account.headers), 409, STATE_CONFLICT)
    assert_problem(client.post(f"/api/v1/jobs/{job_id}/cancel", headers=other_account.headers), 404, NOT_FOUND)
    cancelled = client.post(f"/api/v1/jobs/{job_id}/cancel", headers=account.headers)
    assert cancelled.status_code == 200, cancelled.text
    assert (cancelled.json()["status"], cancelled.json()["cancel_requested"]) == ("cancelled", True)
    assert cancelled.json()["finished_at"] is not None
    again = assert_problem(client.post(f"/api/v1/jobs/{job_id}/cancel", headers=account.headers), 409, STATE_CONFLICT)
    assert "cancelled" in again["detail"]
    assert client.get(f"/api/v1/jobs/{job_id}", headers=account.headers).json()["status"] == "cancelled"  # unchanged
    assert_problem(client.post(f"/api/v1/jobs/{job_id}/retry", headers=other_account.headers), 404, NOT_FOUND)
    retried = client.post(f"/api/v1/jobs/{job_id}/retry", headers=account.headers)
    assert retried.status_code == 200, retried.text
    assert (retried.json()["status"], retried.json()["attempts"], retried.json()["finished_at"]) == ("queued", 0, None)


def test_a_running_job_is_asked_to_stop(app, client, account):
    job_id = _enqueue(app, account.id)
    context = app.app.extensions["charter"]
    with UnitOfWork(context.session_factory) as uow:
        now = SystemClock().now()
        assert uow.jobs.claim(uuid.UUID(job_id), now=now, worker_id="w", lease_until=now + context.jobs.lease)
    answer = client.post(f"/api/v1/jobs/{job_id}/cancel", headers=account.headers)
    assert answer.status_code == 202, answer.text
    assert (answer.json()["status"], answer.json()["cancel_requested"]) == ("running", True)
    assert_problem(client.post(f"/api/v1/jobs/{job_id}/retry", headers=account.headers), 409, STATE_CONFLICT)


@pytest.mark.parametrize("path", ["/api/v1/jobs/{id}", "/api/v1/jobs/{id}/cancel", "/api/v1/jobs/{id}/retry"])
def test_an_unknown_job_is_404(client, account, path):
    method = client.get if path.endswith("}") else client.post
    assert_problem(method(path.format(id=uuid.uuid4()), headers=account.headers), 404, NOT_FOUND)


def test_jobs_need_a_token(client):
    assert_problem(client.get("/api/v1/jobs"), 401)


def test_the_export_holds_exactly_the_owners_jobs_as_the_jobs_api_answers_them(app, client, account, other_account):
    secret = f"whsec_{uuid.uuid4().hex}"
    mine = [_enqueue(app, account.id), _enqueue(app, account.id, payload={"signing_secret": secret})]
    _fail(app, mine[0])
    theirs = _enqueue(app, other_account.id)
    service = _enqueue(app, None)

    export = client.get("/api/v1/users/me/export", headers=account.headers)
    assert export.status_code == 200, export.text
    exported = export.json()["jobs"]
    assert {job["id"] for job in exported} == set(mine)
    assert [(job["created_at"], job["id"]) for job in exported] == sorted((j["created_at"], j["id"]) for j in exported)
    for job in exported:  # the jobs API's representation, failed ones included
        assert job == client.get(f"/api/v1/jobs/{job['id']}", headers=account.headers).json()
    assert {job["status"] for job in exported} == {"failed", "queued"}
    assert all("payload" not in job for job in exported)
    assert secret not in export.text  # a job's arguments never leave the service
    assert theirs not in export.text
    assert service not in export.text

    others = client.get("/api/v1/users/me/export", headers=other_account.headers).json()["jobs"]
    assert [job["id"] for job in others] == [theirs]
