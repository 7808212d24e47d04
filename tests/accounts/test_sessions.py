"""Sessions: listing (device, addresses, times, which is current, pagination), ending one,
logging out here or everywhere, revocation seen at once by another process, and how often
`last_used_at` is written."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import update

from persistence.accounts.models import AuthSession
from services import accounts
from tests.accounts.conftest import CHROME_ON_MAC
from tests.helpers import (
    TEST_SECRET,
    ContractClient,
    Tokens,
    assert_problem,
    instant,
    login,
    register,
    session_factory,
    unique_email,
)
from tests.processes import charter_environment, start_charter_serve, stop_process, wait_until_healthy

SESSIONS = "/api/v1/auth/sessions"
ME = "/api/v1/auth/me"


def _list(client: ContractClient, who: Tokens, **params) -> dict:
    response = client.get(SESSIONS, headers=who.headers, params=params)
    assert response.status_code == 200, response.text
    return response.json()


def _new_user_with_sessions(client: ContractClient, count: int, **login_kwargs) -> tuple[str, list[Tokens]]:
    email = unique_email("sessions")
    register(client, email)
    return email, [login(client, email, **login_kwargs) for _ in range(count)]


def _me(client: ContractClient, who: Tokens) -> int:
    return client.get(ME, headers=who.headers).status_code


def _refresh(client: ContractClient, who: Tokens):
    return client.post("/api/v1/auth/refresh", json={"refresh_token": who.refresh_token})


class TestListSessions:
    def test_lists_own_open_sessions_newest_first_with_details(self, client):
        _, (first, second, third) = _new_user_with_sessions(client, 3, headers={"User-Agent": CHROME_ON_MAC})
        other_email, (others,) = _new_user_with_sessions(client, 1)
        login(client, other_email)  # a second session of the other user

        body = _list(client, second)
        items = body["items"]
        assert [item["id"] for item in items] == [third.session_id, second.session_id, first.session_id]
        assert body["next_cursor"] is None
        created = [instant(item["created_at"]) for item in items]
        assert created == sorted(created, reverse=True)
        assert [item["current"] for item in items] == [False, True, False]
        assert others.session_id not in {item["id"] for item in items}
        for item in items:
            assert "Chrome" in item["device"], item
            assert "Mac OS X" in item["device"], item
            assert item["client_address"]
            assert instant(item["created_at"]) <= instant(item["last_used_at"]) < instant(item["expires_at"])
            # The default session lifetime is 30 days from login.
            assert instant(item["expires_at"]) - instant(item["created_at"]) == timedelta(days=30)

    def test_current_follows_the_token_making_the_request(self, client):
        _, sessions = _new_user_with_sessions(client, 2)
        for session in sessions:
            current = [item["id"] for item in _list(client, session)["items"] if item["current"]]
            assert current == [session.session_id]

    def test_other_users_sessions_never_appear(self, client):
        _, mine = _new_user_with_sessions(client, 2)
        _, theirs = _new_user_with_sessions(client, 2)
        assert {item["id"] for item in _list(client, mine[0])["items"]} == {s.session_id for s in mine}
        assert {item["id"] for item in _list(client, theirs[0])["items"]} == {s.session_id for s in theirs}

    def test_paginates_with_limit_one(self, client):
        _, sessions = _new_user_with_sessions(client, 3)
        everything = [item["id"] for item in _list(client, sessions[0])["items"]]
        assert everything == [s.session_id for s in reversed(sessions)]

        seen, cursor, pages = [], None, 0
        while True:
            params = {"limit": 1} | ({"cursor": cursor} if cursor else {})
            body = _list(client, sessions[0], **params)
            pages += 1
            assert len(body["items"]) == 1
            seen += [item["id"] for item in body["items"]]
            cursor = body["next_cursor"]
            if cursor is None:
                break
            assert pages < 10, "pagination does not end"
        assert seen == everything
        assert pages == 3

    def test_revoked_sessions_are_not_listed(self, client):
        _, (first, second) = _new_user_with_sessions(client, 2)
        assert client.delete(f"{SESSIONS}/{first.session_id}", headers=second.headers).status_code == 204
        assert [item["id"] for item in _list(client, second)["items"]] == [second.session_id]


class TestRevokeSession:
    def test_ends_that_session_only(self, client):
        _, (lost, kept) = _new_user_with_sessions(client, 2)
        response = client.delete(f"{SESSIONS}/{lost.session_id}", headers=kept.headers)
        assert response.status_code == 204
        assert response.content == b""

        assert_problem(client.get(ME, headers=lost.headers), 401, "/problems/unauthorized")
        assert_problem(_refresh(client, lost), 401)
        assert _me(client, kept) == 200
        assert _refresh(client, kept).status_code == 200

    def test_can_end_the_current_session(self, client):
        _, (only,) = _new_user_with_sessions(client, 1)
        assert client.delete(f"{SESSIONS}/{only.session_id}", headers=only.headers).status_code == 204
        assert _me(client, only) == 401

    def test_another_users_session_is_404_and_stays_open(self, client):
        _, (mine,) = _new_user_with_sessions(client, 1)
        _, (theirs,) = _new_user_with_sessions(client, 1)
        assert_problem(
            client.delete(f"{SESSIONS}/{theirs.session_id}", headers=mine.headers), 404, "/problems/not-found"
        )
        assert _me(client, theirs) == 200

    def test_already_ended_session_is_404(self, client):
        email, (first, second) = _new_user_with_sessions(client, 2)
        assert client.delete(f"{SESSIONS}/{first.session_id}", headers=second.headers).status_code == 204
        assert_problem(
            client.delete(f"{SESSIONS}/{first.session_id}", headers=second.headers), 404, "/problems/not-found"
        )
        # A session logged out the ordinary way is ended too.
        third = login(client, email)
        assert client.post("/api/v1/auth/logout", headers=third.headers).status_code == 204
        assert_problem(client.delete(f"{SESSIONS}/{third.session_id}", headers=second.headers), 404)

    def test_unknown_session_is_404(self, client):
        _, (mine,) = _new_user_with_sessions(client, 1)
        assert_problem(client.delete(f"{SESSIONS}/{uuid.uuid4()}", headers=mine.headers), 404)


class TestLogout:
    def test_all_sessions_ends_every_session_of_the_account(self, client):
        _, sessions = _new_user_with_sessions(client, 3)
        _, (bystander,) = _new_user_with_sessions(client, 1)
        response = client.post("/api/v1/auth/logout", headers=sessions[1].headers, json={"all_sessions": True})
        assert response.status_code == 204
        for session in sessions:
            assert_problem(client.get(ME, headers=session.headers), 401, "/problems/unauthorized")
            assert_problem(_refresh(client, session), 401)
        assert _me(client, bystander) == 200

    def test_without_body_ends_only_the_current_session(self, client):
        _, (current, other) = _new_user_with_sessions(client, 2)
        assert client.post("/api/v1/auth/logout", headers=current.headers).status_code == 204
        assert _me(client, current) == 401
        assert_problem(_refresh(client, current), 401)
        assert _me(client, other) == 200
        assert _refresh(client, other).status_code == 200

    def test_all_sessions_false_ends_only_the_current_session(self, client):
        _, (current, other) = _new_user_with_sessions(client, 2)
        response = client.post("/api/v1/auth/logout", headers=current.headers, json={"all_sessions": False})
        assert response.status_code == 204
        assert _me(client, current) == 401
        assert _me(client, other) == 200


@pytest.fixture
def second_process(database_url, tmp_path, openapi, request):
    """`charter serve` in a subprocess on 127.0.0.1, on the session's database."""
    environment = charter_environment(
        DATABASE_URL=database_url,
        JWT_SECRET=TEST_SECRET,
        ENV="test",
        VAR_DIR=str(tmp_path / "var"),
        BCRYPT_ROUNDS="4",
        LOG_LEVEL="WARNING",
        RATE_LIMIT_ENABLED="false",
    )
    base_url, process, log_path = start_charter_serve(environment, workdir=tmp_path)
    request.addfinalizer(lambda: stop_process(process))
    wait_until_healthy(base_url, process, log_path)
    http = httpx.Client(base_url=base_url, timeout=5.0)
    request.addfinalizer(http.close)
    return ContractClient(http, openapi)


def test_revocation_is_seen_at_once_by_another_process(client, second_process):
    remote = second_process
    email = unique_email("two-processes")
    register(client, email)
    there = login(remote, email, headers={"User-Agent": CHROME_ON_MAC})
    assert _me(remote, there) == 200
    here = login(client, email)
    # Both processes see both sessions; the remote one was made from loopback.
    listed = {item["id"]: item for item in _list(remote, there)["items"]}
    assert set(listed) == {there.session_id, here.session_id}
    assert listed[there.session_id]["client_address"] == "127.0.0.1"
    assert "Chrome" in listed[there.session_id]["device"]

    assert client.delete(f"{SESSIONS}/{there.session_id}", headers=here.headers).status_code == 204

    assert_problem(remote.get(ME, headers=there.headers), 401, "/problems/unauthorized")
    assert_problem(_refresh(remote, there), 401)
    assert _me(remote, here) == 200


class TestLastUsed:
    def _last_used(self, client: ContractClient, who: Tokens) -> datetime:
        (item,) = [item for item in _list(client, who)["items"] if item["id"] == who.session_id]
        return instant(item["last_used_at"])

    def test_not_written_on_every_request(self, client):
        _, (session,) = _new_user_with_sessions(client, 1)
        before = self._last_used(client, session)
        for _ in range(3):
            assert _me(client, session) == 200
        assert self._last_used(client, session) == before

    def test_written_when_older_than_a_minute(self, client, app):
        _, (used, idle) = _new_user_with_sessions(client, 2)
        long_ago = (datetime.now(UTC) - timedelta(minutes=5)).replace(microsecond=0)
        with session_factory(app).begin() as db:
            db.execute(
                update(AuthSession)
                .where(AuthSession.id.in_([uuid.UUID(used.session_id), uuid.UUID(idle.session_id)]))
                .values(last_used_at=long_ago)
            )
        started = datetime.now(UTC)
        assert _me(client, used) == 200
        items = {item["id"]: item for item in _list(client, used)["items"]}
        written = instant(items[used.session_id]["last_used_at"])
        assert written >= started - timedelta(seconds=1)
        assert instant(items[idle.session_id]["last_used_at"]) == long_ago  # not used, not written
        # Within the minute that follows, using it again does not write again.
        assert _me(client, used) == 200
        assert self._last_used(client, used) == written

    def test_every_use_is_written_with_zero_resolution(self, client, monkeypatch):
        _, (session,) = _new_user_with_sessions(client, 1)
        monkeypatch.setattr(accounts, "LAST_USED_RESOLUTION", timedelta(0))
        first = self._last_used(client, session)
        time.sleep(0.01)
        assert _me(client, session) == 200
        second = self._last_used(client, session)
        assert second > first
