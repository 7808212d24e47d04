"""The conversation rules with a unit of work per step, a frozen clock and fake providers: an
answer's event stream (start, citations before text, deltas, the stored message), grounded
answers with `[n]` markers that match their citations, "don't know" without a provider when
nothing clears the minimum score, a consumer that stops (generator closed) leaving the answer
stored as `cancelled`, provider failures (fallback before any text, `error` after some), only
active chatbots answering, feedback replacing feedback, and the chatbot's purge."""

from __future__ import annotations

import dataclasses
import uuid

import pytest

from adapters.answer_extractive import ExtractiveAnswerProvider, ScriptedAnswerProvider
from persistence.conversations.models import Conversation, Message
from services import chatbots, conversations
from services.audit import RequestMeta
from services.conversations import (
    DONT_KNOW,
    ChatbotNotActive,
    Citations,
    ConversationConfig,
    Delta,
    MessageEnd,
    MessageStart,
)
from services.errors import Conflict, InvalidInput, NotFound
from tests.conversations.conftest import RETURNS_PAGE, stored_messages


def _stream(new_uow, clock, setup, config, content="How long do refunds take?"):
    return conversations.answer_stream(
        units=new_uow,
        clock=clock,
        config=config,
        caller=setup.owner,
        conversation_id=setup.conversation_id,
        content=content,
    )


def test_an_answer_streams_start_citations_deltas_and_the_stored_message(new_uow, clock, setup):
    events = list(_stream(new_uow, clock, setup, ConversationConfig(provider=ExtractiveAnswerProvider())))

    start, cited, *deltas, end = events
    assert isinstance(start, MessageStart) and start.conversation_id == setup.conversation_id
    assert isinstance(cited, Citations) and deltas and all(isinstance(delta, Delta) for delta in deltas)
    assert isinstance(end, MessageEnd)
    answer = end.message
    assert answer.id == start.answer_id and answer.reply_to == start.question_id
    assert answer.content == "".join(delta.text for delta in deltas)
    assert answer.citations == cited.items
    # The answer is the returns page's refund sentence, cited with that page's number. Which
    # number: the passages' rank, and on SQLite FTS5's bm25 statistics span the whole index
    # (every test's chatbots), so it is read from the citations, not assumed.
    [returns] = [item for item in cited.items if item["source"]["id"] == str(setup.page.id)]
    assert returns["source"] == {
        "type": "web_page",
        "id": str(setup.page.id),
        "url": "https://shop.example/returns",
        "title": "Returns",
        "page": None,
        "heading": None,
    }
    assert returns["quote"] == RETURNS_PAGE
    refund = "Refunds are paid within 14 days of the return reaching our warehouse."
    assert answer.content.startswith(f"{refund} [{returns['number']}]")
    numbers = {item["number"] for item in answer.citations}
    assert set(conversations.markers(answer.content)) <= numbers and conversations.markers(answer.content)
    assert (answer.provider, answer.finish_reason, answer.fallback) == ("extractive", "stop", False)
    assert answer.usage == {
        "passages": len(answer.citations),
        "words_in": 5 + sum(len(item["quote"].split()) for item in answer.citations),
        "words_out": len(answer.content.replace("[", " ").replace("]", " ").split()),
    }
    assert answer.latency_ms == 0  # the clock is frozen

    question, stored = stored_messages(new_uow, setup.conversation_id)
    assert (question.role, question.content, question.position) == ("user", "How long do refunds take?", 1)
    assert (stored.id, stored.role, stored.position, stored.content) == (answer.id, "assistant", 2, answer.content)
    assert stored.citations == answer.citations
    with new_uow() as uow:
        conversation = uow.session.get(Conversation, setup.conversation_id)
        assert conversation.message_count == 2 and conversation.last_message_at is not None


def test_no_passage_over_the_minimum_score_is_a_dont_know_without_citations_or_provider(new_uow, clock, setup):
    provider = ScriptedAnswerProvider(["made up [1]"])
    config = ConversationConfig(provider=provider)

    end = list(_stream(new_uow, clock, setup, config, content="Do you sell pancakes?"))[-1]

    assert (end.message.content, end.message.citations, end.message.finish_reason) == (DONT_KNOW, [], "stop")
    assert end.message.usage["passages"] == 0
    assert provider.requests == []  # never an ungrounded answer: no provider was asked


def test_the_minimum_score_and_passage_count_are_the_chatbots(new_uow, clock, setup):
    meta = RequestMeta()
    with new_uow() as uow:
        chatbots.update_chatbot(
            uow=uow,
            clock=clock,
            caller=setup.owner,
            chatbot_id=setup.chatbot.id,
            changes={"passages_per_answer": 1},
            expected_versions=None,
            meta=meta,
        )
    provider = ScriptedAnswerProvider(["ok [1]"])
    end = list(_stream(new_uow, clock, setup, ConversationConfig(provider=provider), content="shipping refunds"))[-1]
    assert len(end.message.citations) == 1 and len(provider.requests[0].passages) == 1

    with new_uow() as uow:
        chatbots.update_chatbot(
            uow=uow,
            clock=clock,
            caller=setup.owner,
            chatbot_id=setup.chatbot.id,
            changes={"min_score": 0.99},
            expected_versions=None,
            meta=meta,
        )
    end = list(_stream(new_uow, clock, setup, ConversationConfig(provider=provider), content="shipping refunds"))[-1]
    assert (end.message.content, end.message.citations) == (DONT_KNOW, [])


def test_the_provider_gets_the_question_numbered_passages_instructions_and_last_turns(new_uow, clock, setup):
    meta = RequestMeta()
    with new_uow() as uow:
        chatbots.update_chatbot(
            uow=uow,
            clock=clock,
            caller=setup.owner,
            chatbot_id=setup.chatbot.id,
            changes={"instructions": "Be brief."},
            expected_versions=None,
            meta=meta,
        )
    provider = ScriptedAnswerProvider(["Answer [1]"])
    config = ConversationConfig(provider=provider)
    for number in range(5):
        list(_stream(new_uow, clock, setup, config, content=f"refunds question {number}"))

    request = provider.requests[-1]
    assert request.question == "refunds question 4" and request.instructions == "Be brief."
    assert [passage.number for passage in request.passages] == list(range(1, len(request.passages) + 1))
    assert len(request.history) == conversations.HISTORY_MESSAGES
    assert [turn.content for turn in request.history] == [
        "refunds question 1",
        "Answer [1]",
        "refunds question 2",
        "Answer [1]",
        "refunds question 3",
        "Answer [1]",
    ]


def test_a_consumer_that_stops_mid_answer_leaves_it_stored_as_cancelled(new_uow, clock, setup):
    provider = ScriptedAnswerProvider(["Refunds take 14 days [1].", " Gift cards are final [1].", " Bye."])
    stream = _stream(new_uow, clock, setup, ConversationConfig(provider=provider))
    start = next(stream)
    cited = next(stream)
    first = next(stream)
    assert (
        isinstance(start, MessageStart) and isinstance(cited, Citations) and first == Delta("Refunds take 14 days [1].")
    )

    stream.close()  # what a client disconnecting from a streamed answer does

    question, answer = stored_messages(new_uow, setup.conversation_id)
    assert (question.id, answer.id, answer.reply_to) == (start.question_id, start.answer_id, start.question_id)
    assert (answer.content, answer.finish_reason) == ("Refunds take 14 days [1].", "cancelled")
    assert answer.citations == cited.items and answer.usage["words_out"] == 5


def test_a_consumer_that_stops_before_the_text_leaves_an_empty_cancelled_answer(new_uow, clock, setup):
    stream = _stream(new_uow, clock, setup, ConversationConfig(provider=ScriptedAnswerProvider()))
    next(stream)
    stream.close()
    _question, answer = stored_messages(new_uow, setup.conversation_id)
    assert (answer.content, answer.finish_reason, answer.citations) == ("", "cancelled", [])


def test_a_provider_failing_before_any_text_gives_way_to_the_fallback(new_uow, clock, setup):
    failing = ScriptedAnswerProvider(name="remote", fail=TimeoutError("the provider did not answer"))
    config = ConversationConfig(provider=failing, fallback=ExtractiveAnswerProvider())
    answer = list(_stream(new_uow, clock, setup, config))[-1].message
    assert (answer.provider, answer.fallback, answer.finish_reason) == ("extractive", True, "stop")
    assert conversations.markers(answer.content) and set(conversations.markers(answer.content)) <= {
        item["number"] for item in answer.citations
    }


def test_a_provider_failing_after_some_text_ends_the_answer_with_error(new_uow, clock, setup):
    failing = ScriptedAnswerProvider(["Refunds [1]", " and more"], name="remote", fail=OSError("reset"), fail_after=1)
    config = ConversationConfig(provider=failing, fallback=ExtractiveAnswerProvider())
    answer = list(_stream(new_uow, clock, setup, config))[-1].message
    assert (answer.content, answer.finish_reason, answer.provider, answer.fallback) == (
        "Refunds [1]",
        "error",
        "remote",
        False,
    )


def test_a_provider_failing_without_a_fallback_ends_the_answer_with_error(new_uow, clock, setup):
    failing = ScriptedAnswerProvider(name="remote", fail=TimeoutError("slow"))
    answer = list(_stream(new_uow, clock, setup, ConversationConfig(provider=failing)))[-1].message
    assert (answer.content, answer.finish_reason, answer.fallback) == ("", "error", False)


def test_an_answer_longer_than_the_limit_is_cut_with_length(new_uow, clock, setup):
    hundred = " refund" * 100
    provider = ScriptedAnswerProvider([hundred] * 4)
    answer = list(_stream(new_uow, clock, setup, ConversationConfig(provider=provider)))[-1].message
    assert (answer.finish_reason, answer.content) == ("length", hundred * 3)
    assert len(answer.content.split()) == conversations.MAX_ANSWER_WORDS


@pytest.mark.parametrize("status", ["draft", "paused", "archived"])
def test_only_an_active_chatbot_answers_and_a_refusal_stores_nothing(new_uow, clock, setup, status):
    with new_uow() as uow:
        chatbot = uow.chatbots.get(setup.chatbot.id, owner_id=setup.owner.id)
        chatbot.status = status  # any state the transitions can reach
    with pytest.raises(ChatbotNotActive, match=status):
        list(_stream(new_uow, clock, setup, ConversationConfig(provider=ExtractiveAnswerProvider())))
    assert stored_messages(new_uow, setup.conversation_id) == []


@pytest.mark.parametrize("content", ["", "   \n\t ", "x" * (conversations.MAX_CONTENT_CHARS + 1)])
def test_a_blank_or_overlong_message_is_refused_and_stores_nothing(new_uow, clock, setup, content):
    with pytest.raises(InvalidInput):
        list(_stream(new_uow, clock, setup, ConversationConfig(provider=ExtractiveAnswerProvider()), content=content))
    assert stored_messages(new_uow, setup.conversation_id) == []


def test_other_users_see_no_conversation_and_administrators_see_all(new_uow, clock, setup, other_account):
    def read(caller):
        with new_uow() as uow:
            return conversations.get_conversation(uow=uow, caller=caller, conversation_id=setup.conversation_id)

    with new_uow() as uow:
        other = uow.users.get(uuid.UUID(other_account.id))
        uow.session.expunge_all()
    with pytest.raises(NotFound):
        read(other)
    with pytest.raises(NotFound):
        list(
            _stream(
                new_uow,
                clock,
                dataclasses.replace(setup, owner=other),
                ConversationConfig(provider=ExtractiveAnswerProvider()),
            )
        )
    other.role = "admin"
    conversation, chatbot = read(other)
    assert (conversation.id, chatbot.id) == (setup.conversation_id, setup.chatbot.id)
    assert stored_messages(new_uow, setup.conversation_id) == []


def test_feedback_is_one_per_answer_and_only_on_answers(new_uow, clock, setup):
    config = ConversationConfig(provider=ExtractiveAnswerProvider())
    answer = list(_stream(new_uow, clock, setup, config))[-1].message
    question = stored_messages(new_uow, setup.conversation_id)[0]

    def feedback(message_id, rating, comment=None):
        with new_uow() as uow:
            return conversations.give_feedback(
                uow=uow,
                clock=clock,
                caller=setup.owner,
                conversation_id=setup.conversation_id,
                message_id=message_id,
                rating=rating,
                comment=comment,
            )

    feedback(answer.id, "up", "  Helpful  ")
    clock.advance(minutes=1)
    replaced = feedback(answer.id, "down")
    assert (replaced.feedback_rating, replaced.feedback_comment, replaced.feedback_at) == ("down", None, clock.now())
    with pytest.raises(Conflict):
        feedback(question.id, "up")
    with pytest.raises(NotFound):
        feedback(uuid.uuid4(), "up")
    stored = stored_messages(new_uow, setup.conversation_id)
    assert [(m.role, m.feedback_rating) for m in stored] == [("user", None), ("assistant", "down")]


def test_the_chatbots_purge_removes_its_conversations_and_messages(new_uow, clock, setup, engine):
    list(_stream(new_uow, clock, setup, ConversationConfig(provider=ExtractiveAnswerProvider())))
    with new_uow() as uow:
        chatbots.delete_chatbot(
            uow=uow,
            clock=clock,
            engine=engine,
            caller=setup.owner,
            chatbot_id=setup.chatbot.id,
            expected_versions=None,
            meta=RequestMeta(),
        )
    with new_uow() as uow, pytest.raises(NotFound):  # gone with its chatbot from the request on
        conversations.get_conversation(uow=uow, caller=setup.owner, conversation_id=setup.conversation_id)
    with new_uow() as uow:
        assert chatbots.purge_chatbot(uow=uow, chatbot_id=setup.chatbot.id)
    with new_uow() as uow:
        assert uow.session.get(Conversation, setup.conversation_id) is None
        assert uow.conversations.messages(setup.conversation_id, limit=10) == []
        assert uow.session.query(Message).filter(Message.conversation_id == setup.conversation_id).count() == 0
