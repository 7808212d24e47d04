"""The last-administrator rule under real concurrency (issue 11): administrators acting on
each other at the same moment, through a served app, on SQLite and on PostgreSQL, never leave
the service without an active administrator."""

from __future__ import annotations

import uuid
from collections import Counter

from sqlalchemy import select, update

from persistence.accounts.models import User
from tests.conftest import PASSWORD, Account, create_admin
from tests.served import Served, at_once


def _make_admin(served: Served) -> Account:
    """A new administrator, made as `charter create-admin` makes one, logged in over HTTP."""
    email = f"admin-{uuid.uuid4().hex[:12]}@example.com"
    admin_id = create_admin(served.app, email)
    with served.client() as http:
        tokens = http.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD}).json()
    return Account(admin_id, email, PASSWORD, tokens["access_token"], tokens["refresh_token"])


def _only_admins(served: Served, keep: list[Account]) -> None:
    """Arrange that `keep` are the only active administrators (others become plain users)."""
    ids = [uuid.UUID(account.id) for account in keep]
    with served.state.session_factory.begin() as db:
        db.execute(update(User).where(User.role == "admin", User.id.not_in(ids)).values(role="user"))


def _active_admins(served: Served) -> set[str]:
    with served.state.session_factory() as db:
        return {str(i) for i in db.scalars(select(User.id).where(User.role == "admin", User.status == "active"))}


def _at_each_other(served: Served, change: dict[str, str]) -> list:
    """Two administrators, the only active ones, each PATCH the other with `change` at once."""
    first, second = _make_admin(served), _make_admin(served)
    _only_admins(served, [first, second])
    pairs = [(first, second), (second, first)]
    return at_once(
        2,
        lambda http, i: http.patch(f"/api/v1/users/{pairs[i][1].id}", json=change, headers=pairs[i][0].headers),
        served=served,
    )


def test_two_admins_demoting_each_other_at_once_leave_one_admin(served: Served):
    responses = _at_each_other(served, {"role": "user"})

    assert sorted(r.status_code for r in responses) == [200, 403], [r.text for r in responses]
    [refused] = [r for r in responses if r.status_code == 403]
    assert refused.json()["type"] == "/problems/forbidden"
    assert len(_active_admins(served)) == 1


def test_two_admins_deactivating_each_other_at_once_leave_one_admin(served: Served):
    responses = _at_each_other(served, {"status": "deactivated"})

    # The loser's session ended with its account, or it lost its rights first: 401 or 403.
    statuses = Counter(r.status_code for r in responses)
    assert statuses[200] == 1 and statuses[401] + statuses[403] == 1, [r.text for r in responses]
    assert len(_active_admins(served)) == 1


def test_the_last_two_admins_deleting_themselves_at_once_leave_one(served: Served):
    first, second = _make_admin(served), _make_admin(served)
    _only_admins(served, [first, second])
    both = [first, second]

    responses = at_once(2, lambda http, i: http.delete("/api/v1/users/me", headers=both[i].headers), served=served)

    assert sorted(r.status_code for r in responses) == [204, 409], [r.text for r in responses]
    assert len(_active_admins(served)) == 1
