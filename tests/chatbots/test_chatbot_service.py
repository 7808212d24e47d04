"""The chatbot rules without HTTP (services/chatbots.py): defaults, origins normalised, the
status transitions, If-Match versions, owner scope and administrators, the cap, deletion as a
job that is idempotent, and the audit events."""

from __future__ import annotations

import uuid

import pytest

from persistence.audit.models import AuditEvent
from services import chatbots
from services import jobs as job_services
from services.audit import RequestMeta
from services.errors import Forbidden, InvalidInput, NotFound, PreconditionFailed
from tests.helpers import on_plan, register_and_login

META = RequestMeta(client_address="203.0.113.7", user_agent="pytest", request_id="req-chatbots")


def _user(new_uow, user_id):
    with new_uow() as uow:
        user = uow.users.get(uuid.UUID(user_id))
    assert user is not None
    return user


@pytest.fixture
def other(client, new_uow):
    return _user(new_uow, register_and_login(client).id)


@pytest.fixture
def administrator(admin, new_uow):
    return _user(new_uow, admin.id)


def _create(new_uow, clock, caller, **data):
    with new_uow() as uow:
        return chatbots.create_chatbot(uow=uow, clock=clock, caller=caller, data={"name": "Helper", **data}, meta=META)


def _update(new_uow, clock, caller, chatbot_id, expected=None, **changes):
    with new_uow() as uow:
        return chatbots.update_chatbot(
            uow=uow,
            clock=clock,
            caller=caller,
            chatbot_id=chatbot_id,
            changes=changes,
            expected_versions=expected,
            meta=META,
        )


def _get(new_uow, caller, chatbot_id):
    with new_uow() as uow:
        return chatbots.get_chatbot(uow=uow, caller=caller, chatbot_id=chatbot_id)


def _events(new_uow, chatbot_id) -> list[AuditEvent]:
    with new_uow() as uow:
        events = uow.session.query(AuditEvent).filter(AuditEvent.type.like("chatbot_%")).all()
        return [event for event in events if event.details.get("chatbot_id") == str(chatbot_id)]


def test_a_new_chatbot_is_a_draft_with_the_documented_defaults(new_uow, clock, owner):
    chatbot = _create(new_uow, clock, owner)
    assert (chatbot.status, chatbot.version, chatbot.owner_id) == ("draft", 1, owner.id)
    assert chatbot.instructions == ""
    assert chatbot.welcome_message is None
    assert chatbot.suggested_questions == [] and chatbot.allowed_origins == []
    assert (chatbot.visibility, chatbot.passages_per_answer, chatbot.min_score) == ("private", 5, 0.0)
    with new_uow() as uow:
        summaries = chatbots.knowledge_of(uow=uow, chatbots=[chatbot])
    assert summaries == {chatbot.id: chatbots.KnowledgeSummary(0, 0, 0, 0, "empty")}
    assert chatbot.created_at == chatbot.updated_at == clock.now()


def test_origins_are_stored_as_a_browser_sends_them(new_uow, clock, owner):
    chatbot = _create(
        new_uow,
        clock,
        owner,
        allowed_origins=["https://WWW.Acme.example:443", "https://www.acme.example", "https://acme.example:8443"],
    )
    assert chatbot.allowed_origins == ["https://www.acme.example", "https://acme.example:8443"]
    assert chatbots.normalise_origins([]) == []


@pytest.mark.parametrize(
    ("path", "allowed"),
    [
        (["active"], True),
        (["archived"], True),
        (["active", "paused", "active"], True),
        (["active", "paused", "archived", "draft"], True),
        (["active", "archived"], True),
        (["paused"], False),
        (["active", "draft"], False),
        (["archived", "active"], False),
        (["archived", "paused"], False),
    ],
)
def test_status_transitions(new_uow, clock, owner, path, allowed):
    chatbot = _create(new_uow, clock, owner)
    *before, last = path
    for status in before:
        _update(new_uow, clock, owner, chatbot.id, status=status)
    current = _get(new_uow, owner, chatbot.id)
    if allowed:
        assert _update(new_uow, clock, owner, chatbot.id, status=last).status == last
        return
    with pytest.raises(chatbots.ChatbotStatusConflict) as refused:
        _update(new_uow, clock, owner, chatbot.id, status=last, name="Renamed")
    assert f"from {current.status} to {last}" in refused.value.detail
    after = _get(new_uow, owner, chatbot.id)
    assert (after.status, after.name, after.version) == (current.status, "Helper", current.version)


def test_every_status_may_be_set_again_without_a_change(new_uow, clock, owner):
    chatbot = _create(new_uow, clock, owner)
    again = _update(new_uow, clock, owner, chatbot.id, status="draft", name="Helper")
    assert again.version == 1
    assert [event.type for event in _events(new_uow, chatbot.id)] == ["chatbot_created"]


def test_a_change_raises_the_version_and_is_audited_with_the_fields_changed(new_uow, clock, owner):
    chatbot = _create(new_uow, clock, owner)
    clock.advance(seconds=5)
    changed = _update(
        new_uow, clock, owner, chatbot.id, expected=frozenset({1}), name="Helper", min_score=1, passages_per_answer=9
    )
    assert (changed.version, changed.min_score, changed.passages_per_answer) == (2, 1.0, 9)
    assert changed.updated_at == clock.now() != changed.created_at
    updated = [event for event in _events(new_uow, chatbot.id) if event.type == "chatbot_updated"]
    assert [event.details["changed"] for event in updated] == [["min_score", "passages_per_answer"]]
    assert (updated[0].actor_id, updated[0].subject_id, updated[0].request_id) == (owner.id, owner.id, "req-chatbots")


def test_a_stale_version_changes_nothing(new_uow, clock, owner):
    chatbot = _create(new_uow, clock, owner)
    _update(new_uow, clock, owner, chatbot.id, name="Second")
    with pytest.raises(PreconditionFailed):
        _update(new_uow, clock, owner, chatbot.id, expected=frozenset({1}), name="Third")
    assert _get(new_uow, owner, chatbot.id).name == "Second"


def test_another_users_chatbot_is_not_found_and_an_administrator_sees_and_changes_it(
    new_uow, clock, owner, other, administrator
):
    chatbot = _create(new_uow, clock, owner)
    with pytest.raises(NotFound):
        _get(new_uow, other, chatbot.id)
    with pytest.raises(NotFound):
        _update(new_uow, clock, other, chatbot.id, name="Mine now")
    assert _get(new_uow, administrator, chatbot.id).id == chatbot.id
    changed = _update(new_uow, clock, administrator, chatbot.id, status="archived")
    assert changed.status == "archived"
    event = next(event for event in _events(new_uow, chatbot.id) if event.type == "chatbot_updated")
    assert (event.actor_id, event.subject_id) == (administrator.id, owner.id)


def test_the_list_is_the_callers_own_and_an_administrators_is_everyones(
    new_uow, clock, owner, other, administrator, app
):
    on_plan(app, owner.id)  # three chatbots: more than the free plan allows
    mine = [_create(new_uow, clock, owner).id for _ in range(3)]
    theirs = _create(new_uow, clock, other).id
    with new_uow() as uow:
        first = chatbots.list_chatbots(uow=uow, caller=owner, limit=2)
        second = chatbots.list_chatbots(uow=uow, caller=owner, limit=2, cursor=first.next_cursor)
        assert second.next_cursor is None
        assert {c.id for c in first.items + second.items} == set(mine)
        everyone = chatbots.list_chatbots(uow=uow, caller=administrator, limit=100)
        assert {theirs, *mine} <= {c.id for c in everyone.items}
        only_other = chatbots.list_chatbots(uow=uow, caller=administrator, limit=100, owner_id=other.id)
        assert [c.id for c in only_other.items] == [theirs]
        assert [c.id for c in chatbots.list_chatbots(uow=uow, caller=other, limit=10, owner_id=other.id).items] == [
            theirs
        ]
        with pytest.raises(Forbidden):
            chatbots.list_chatbots(uow=uow, caller=other, limit=10, owner_id=owner.id)
        with pytest.raises(InvalidInput):
            chatbots.list_chatbots(uow=uow, caller=owner, limit=10, cursor="bm9wZQ")


def test_the_fifty_first_chatbot_is_refused_and_a_deleted_one_frees_its_place(new_uow, clock, owner, engine, app):
    on_plan(app, owner.id)  # the cap, not a quota: a plan that allows 50
    with new_uow() as uow:
        for number in range(chatbots.MAX_CHATBOTS_PER_USER):
            chatbots.create_chatbot(uow=uow, clock=clock, caller=owner, data={"name": f"Bot {number}"}, meta=META)
    with pytest.raises(chatbots.ChatbotLimitReached):
        _create(new_uow, clock, owner)
    with new_uow() as uow:
        assert uow.chatbots.count(owner.id) == chatbots.MAX_CHATBOTS_PER_USER
        victim = chatbots.list_chatbots(uow=uow, caller=owner, limit=1).items[0]
        chatbots.delete_chatbot(
            uow=uow, clock=clock, engine=engine, caller=owner, chatbot_id=victim.id, expected_versions=None, meta=META
        )
    assert _create(new_uow, clock, owner).name == "Helper"


def test_deletion_hides_the_chatbot_at_once_and_its_job_removes_it_idempotently(new_uow, clock, owner, engine, queue):
    chatbot = _create(new_uow, clock, owner)
    with new_uow() as uow, pytest.raises(PreconditionFailed):
        chatbots.delete_chatbot(
            uow=uow,
            clock=clock,
            engine=engine,
            caller=owner,
            chatbot_id=chatbot.id,
            expected_versions=frozenset({7}),
            meta=META,
        )
    assert _get(new_uow, owner, chatbot.id).id == chatbot.id
    with new_uow() as uow:
        job = chatbots.delete_chatbot(
            uow=uow,
            clock=clock,
            engine=engine,
            caller=owner,
            chatbot_id=chatbot.id,
            expected_versions=frozenset({1}),
            meta=META,
        )
    assert (job.kind, job.owner_id, job.subject_type, job.subject_id) == (
        "chatbots.delete",
        owner.id,
        "chatbot",
        str(chatbot.id),
    )
    assert queue.of(job.id) == [clock.now()]
    with pytest.raises(NotFound):
        _get(new_uow, owner, chatbot.id)
    with new_uow() as uow:
        assert chatbot.id not in {c.id for c in chatbots.exported_chatbots(uow=uow, owner_id=owner.id)}
        assert uow.chatbots.get_for_deletion(chatbot.id) is not None  # the row waits for the job

    report = job_services.run(engine=engine, unit_of_work=new_uow, clock=clock, job_id=job.id, worker_id="w")
    assert report.outcome == job_services.Outcome.SUCCEEDED
    with new_uow() as uow:
        assert uow.chatbots.get_for_deletion(chatbot.id) is None
        assert uow.jobs.get(job.id).result == {"chatbot_id": str(chatbot.id), "deleted": True}
        assert chatbots.purge_chatbot(uow=uow, chatbot_id=chatbot.id) is False  # a second run: nothing left
    # one of each (the frozen clock gives both the same occurred_at: their order is not defined,
    # and PostgreSQL's heap order varies)
    assert sorted(event.type for event in _events(new_uow, chatbot.id)) == ["chatbot_created", "chatbot_deleted"]


def test_a_chatbot_not_marked_for_deletion_is_never_purged(new_uow, clock, owner):
    chatbot = _create(new_uow, clock, owner)
    with new_uow() as uow:
        assert chatbots.purge_chatbot(uow=uow, chatbot_id=chatbot.id) is False
    assert _get(new_uow, owner, chatbot.id).id == chatbot.id
