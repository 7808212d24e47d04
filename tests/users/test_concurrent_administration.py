"""The last-administrator rule under real concurrency (issue 11): administrators acting on
each other at the same moment, through a served app, on SQLite and on PostgreSQL, never leave
the service without an active administrator."""

from __future__ import annotations

import uuid
from collections import Counter

from sqlalchemy import select, update

from persistence.accounts.models import User
from tests.helpers import Account, create_admin_and_login
from tests.served import Served, at_once


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
    with served.client() as http:  # administrators made as `charter create-admin` makes them
        first, second = create_admin_and_login(served.app, http), create_admin_and_login(served.app, http)
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
    with served.client() as http:  # administrators made as `charter create-admin` makes them
        first, second = create_admin_and_login(served.app, http), create_admin_and_login(served.app, http)
    _only_admins(served, [first, second])
    both = [first, second]

    responses = at_once(2, lambda http, i: http.delete("/api/v1/users/me", headers=both[i].headers), served=served)

    assert sorted(r.status_code for r in responses) == [204, 409], [r.text for r in responses]
    assert len(_active_admins(served)) == 1
