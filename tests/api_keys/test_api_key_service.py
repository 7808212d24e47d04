"""The API key rules without HTTP (services/api_keys.py): the key's shape and what is stored of
it, authentication (constant-time comparison, expiry, revocation, a deactivated owner), the
once-a-minute `last_used_at`, the cap, the scope checks and the audit events."""

from __future__ import annotations

import hashlib
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import select

from persistence.api_keys.models import ApiKey
from persistence.audit.models import AuditEvent
from services import api_keys
from services.api_keys import MAX_ACTIVE_KEYS_PER_USER, ApiKeyLimitReached, InsufficientScope, Scope
from services.audit import RequestMeta
from services.errors import InvalidInput, InvalidToken, NotFound
from tests.helpers import on_plan

META = RequestMeta(client_address="203.0.113.9", user_agent="pytest", request_id="req-api-keys")


def _create(new_uow, clock, owner, *, scopes=("tasks:read",), name="CI", expires_at=None):
    with new_uow() as uow:
        return api_keys.create_key(
            uow=uow, clock=clock, owner=owner, name=name, scopes=scopes, expires_at=expires_at, meta=META
        )


def _authenticate(new_uow, clock, key):
    with new_uow() as uow:
        return api_keys.authenticate(uow=uow, clock=clock, key=key)


def _stored(new_uow, key_id) -> ApiKey:
    with new_uow() as uow:
        return uow.session.scalars(select(ApiKey).where(ApiKey.id == key_id)).one()


def test_a_key_has_a_prefix_an_id_part_and_256_bits_of_secret_and_only_its_hash_is_stored(new_uow, clock, owner):
    created = _create(new_uow, clock, owner, scopes=["tasks:write", "tasks:read", "tasks:read"])

    assert api_keys.KEY_PATTERN.fullmatch(created.secret)
    prefix, secret_part = created.secret[:20], created.secret[21:]
    assert prefix == created.key.prefix and prefix.startswith("chk_")
    assert len(secret_part) == 43  # secrets.token_urlsafe(32): 32 random bytes
    stored = _stored(new_uow, created.key.id)
    assert stored.secret_hash == hashlib.sha256(created.secret.encode()).hexdigest()
    assert created.secret not in {stored.prefix, stored.secret_hash, stored.name}
    assert stored.scopes == ["tasks:read", "tasks:write"]  # duplicates dropped, sorted
    assert _create(new_uow, clock, owner).secret != created.secret


def test_the_right_key_authenticates_its_owner(new_uow, clock, owner):
    created = _create(new_uow, clock, owner)

    found = _authenticate(new_uow, clock, created.secret)

    assert found.user.id == owner.id
    assert found.key.id == created.key.id


@pytest.mark.parametrize(
    "tamper",
    [
        lambda key: key[:-1] + ("A" if key[-1] != "A" else "B"),  # known prefix, wrong secret
        lambda key: "chk_0000000000000000" + key[20:],  # unknown prefix
        lambda key: key[:-1],  # malformed
        lambda key: key + "x",
        lambda key: "chk_",
    ],
)
def test_a_wrong_or_malformed_key_is_refused(new_uow, clock, owner, tamper):
    created = _create(new_uow, clock, owner)

    with pytest.raises(InvalidToken):
        _authenticate(new_uow, clock, tamper(created.secret))


def test_the_secret_is_compared_in_constant_time(new_uow, clock, owner, monkeypatch):
    created = _create(new_uow, clock, owner)
    compared = []
    real = api_keys.hmac.compare_digest

    def recording(a, b):
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(api_keys.hmac, "compare_digest", recording)
    _authenticate(new_uow, clock, created.secret)
    with pytest.raises(InvalidToken):
        _authenticate(new_uow, clock, created.secret[:-1] + ("A" if created.secret[-1] != "A" else "B"))

    stored_hash = _stored(new_uow, created.key.id).secret_hash
    assert [a for a, _ in compared] == [stored_hash, stored_hash]
    assert compared[0][1] == stored_hash and compared[1][1] != stored_hash


def test_an_expired_key_is_refused_from_its_expiry_on(new_uow, clock, owner):
    created = _create(new_uow, clock, owner, expires_at=clock.now() + timedelta(hours=1))

    clock.advance(minutes=59, seconds=59)
    _authenticate(new_uow, clock, created.secret)
    clock.advance(seconds=1)
    with pytest.raises(InvalidToken):
        _authenticate(new_uow, clock, created.secret)


def test_a_revoked_key_is_refused_and_gone_from_reads(new_uow, clock, owner):
    created = _create(new_uow, clock, owner)
    with new_uow() as uow:
        api_keys.revoke_key(uow=uow, clock=clock, owner=owner, key_id=created.key.id, meta=META)

    with pytest.raises(InvalidToken):
        _authenticate(new_uow, clock, created.secret)
    with new_uow() as uow, pytest.raises(NotFound):
        api_keys.get_key(uow=uow, owner_id=owner.id, key_id=created.key.id)
    with new_uow() as uow, pytest.raises(NotFound):  # a second revocation finds nothing
        api_keys.revoke_key(uow=uow, clock=clock, owner=owner, key_id=created.key.id, meta=META)
    with new_uow() as uow:
        listed = api_keys.list_keys(uow=uow, owner_id=owner.id, limit=100).items
        exported = api_keys.exported_keys(uow=uow, owner_id=owner.id)
    assert created.key.id not in {key.id for key in listed}
    assert [key.revoked_at for key in exported if key.id == created.key.id] == [clock.now()]


def test_a_deactivated_owners_key_is_refused(new_uow, clock, owner):
    created = _create(new_uow, clock, owner)
    with new_uow() as uow:
        user = uow.users.get(owner.id)
        user.status = "deactivated"

    with pytest.raises(InvalidToken):
        _authenticate(new_uow, clock, created.secret)


def test_last_used_at_is_written_at_most_once_a_minute(new_uow, clock, owner):
    created = _create(new_uow, clock, owner)
    assert _stored(new_uow, created.key.id).last_used_at is None

    _authenticate(new_uow, clock, created.secret)
    first = clock.now()
    assert _stored(new_uow, created.key.id).last_used_at == first
    clock.advance(seconds=59)
    _authenticate(new_uow, clock, created.secret)
    assert _stored(new_uow, created.key.id).last_used_at == first
    clock.advance(seconds=2)
    _authenticate(new_uow, clock, created.secret)
    assert _stored(new_uow, created.key.id).last_used_at == clock.now()


def test_another_users_key_is_not_found(new_uow, clock, owner, other_account):
    created = _create(new_uow, clock, owner)
    other_id = uuid.UUID(other_account.id)
    with new_uow() as uow, pytest.raises(NotFound):
        api_keys.get_key(uow=uow, owner_id=other_id, key_id=created.key.id)
    with new_uow() as uow:
        other = uow.users.get(other_id)
        with pytest.raises(NotFound):
            api_keys.revoke_key(uow=uow, clock=clock, owner=other, key_id=created.key.id, meta=META)
    _authenticate(new_uow, clock, created.secret)  # still works


def test_the_cap_counts_active_keys_only(new_uow, clock, owner, app):
    on_plan(app, owner.id)  # the cap, not a quota: a plan that allows 25
    made = [_create(new_uow, clock, owner, name=f"k{n}") for n in range(MAX_ACTIVE_KEYS_PER_USER - 1)]
    expiring = _create(new_uow, clock, owner, name="short", expires_at=clock.now() + timedelta(minutes=5))

    with pytest.raises(ApiKeyLimitReached):
        _create(new_uow, clock, owner)
    with new_uow() as uow:
        api_keys.revoke_key(uow=uow, clock=clock, owner=owner, key_id=made[0].key.id, meta=META)
    _create(new_uow, clock, owner, name="after a revocation")
    with pytest.raises(ApiKeyLimitReached):
        _create(new_uow, clock, owner)
    clock.advance(minutes=5)  # `expiring` expires: no longer counted
    _create(new_uow, clock, owner, name="after an expiry")
    assert expiring.key.id


@pytest.mark.parametrize(
    ("scopes", "expires_in", "pointer"),
    [
        ([], None, "/scopes"),
        (["tasks:read", "tasks:admin"], None, "/scopes/1"),
        (["tasks:read"], timedelta(0), "/expires_at"),
        (["tasks:read"], timedelta(seconds=-1), "/expires_at"),
    ],
)
def test_bad_input_is_refused_and_makes_nothing(new_uow, clock, owner, scopes, expires_in, pointer):
    expires_at = clock.now() + expires_in if expires_in is not None else None
    with pytest.raises(InvalidInput) as refused:
        _create(new_uow, clock, owner, scopes=scopes, expires_at=expires_at)
    assert refused.value.pointer == pointer
    with new_uow() as uow:
        assert api_keys.list_keys(uow=uow, owner_id=owner.id, limit=10).items == []


def test_scopes_cover_an_operation_only_when_every_needed_one_is_held():
    api_keys.authorize_scopes(operation_id="listTasks", required=frozenset({"tasks:read"}), granted=["tasks:read"])
    with pytest.raises(InsufficientScope, match="tasks:read"):
        api_keys.authorize_scopes(operation_id="listTasks", required=frozenset({"tasks:read"}), granted=["chat"])
    with pytest.raises(InsufficientScope, match="access token"):
        api_keys.authorize_scopes(operation_id="logout", required=None, granted=[scope.value for scope in Scope])


def test_creation_and_revocation_are_audited_without_the_secret(new_uow, clock, owner):
    created = _create(new_uow, clock, owner, scopes=["chat"])
    with new_uow() as uow:
        api_keys.revoke_key(uow=uow, clock=clock, owner=owner, key_id=created.key.id, meta=META)
    with new_uow() as uow:
        events = list(uow.session.scalars(select(AuditEvent).where(AuditEvent.request_id == META.request_id)))
    mine = [event for event in events if event.details.get("api_key_id") == str(created.key.id)]
    assert sorted(event.type for event in mine) == ["api_key_created", "api_key_revoked"]  # one each
    for event in mine:
        assert event.actor_id == owner.id == event.subject_id
        assert event.details["prefix"] == created.key.prefix and event.details["scopes"] == ["chat"]
        assert created.secret not in str(event.details)
