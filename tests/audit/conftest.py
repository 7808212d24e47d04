"""Fixtures for the audit log tests: an administrator and direct database reads (the same
helpers as tests/users)."""

from __future__ import annotations

import pytest

from tests.conftest import Account, ContractClient
from tests.users.conftest import Database, make_admin


@pytest.fixture
def admin(app, client: ContractClient) -> Account:
    """A logged-in administrator."""
    return make_admin(app, client)


@pytest.fixture
def database(app) -> Database:
    return Database(app)
