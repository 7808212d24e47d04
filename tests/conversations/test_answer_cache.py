"""The answer cache (issue 18) with a unit of work per step, a frozen clock and a provider that
counts its calls: the same normalised first question to the same chatbot is answered once and
then from the cache — streamed as deltas, stored as messages with its citations, no tokens —
while anything that changes an answer asks the provider again: a change of the chatbot's
knowledge (its `knowledge_version`, bumped in the transaction of every passage change), of its
answer settings, another owner, a later turn of a conversation. Incomplete answers (cancelled,
failed, a fallback's) and answers whose knowledge moved while they were composed are not kept.
A Redis that cannot be reached still answers."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from adapters.answer_extractive import ExtractiveAnswerProvider, ScriptedAnswerProvider
from adapters.cache_memory import MemoryCacheBackend
from adapters.cache_redis import RedisCacheBackend
from services import chatbots, conversations, knowledge
from services.audit import RequestMeta
from services.caching import Cache
from services.conversations import ANSWER_CACHE, Citations, ConversationConfig, Delta, MessageEnd
from tests.conversations.conftest import RETURNS_PAGE, SHIPPING_MANUAL, index, stored_messages
from tests.processes import free_port

QUESTION = "How long do refunds take?"


class CountingProvider:
    """The extractive provider, counting the answers it composes (and optionally running
    `during` once, in the middle of its first answer)."""

    name = "extractive"

    def __init__(self, during=None) -> None:
        self.inner = ExtractiveAnswerProvider()
        self.calls = 0
        self.during = during

    def answer(self, request) -> Iterator:
        self.calls += 1
        if self.during is not None:
            during, self.during = self.during, None
            during()
        yield from self.inner.answer(request)


class Reads:
    """Counts a cache's reads by outcome."""

    def __init__(self) -> None:
        self.counts: dict[tuple[str, str], int] = {}

    def __call__(self, cache: str, outcome: str) -> None:
        self.counts[(cache, outcome)] = self.counts.get((cache, outcome), 0) + 1

    def __getitem__(self, outcome: str) -> int:
        return self.counts.get((ANSWER_CACHE, outcome), 0)


@pytest.fixture
def reads() -> Reads:
    return Reads()


@pytest.fixture
def cache(reads) -> Cache:
    return Cache(MemoryCacheBackend(), prefix=f"t-{uuid.uuid4().hex}", observe=reads)


def config_of(provider, cache, **values) -> ConversationConfig:
    return ConversationConfig(provider=provider, cache=cache, answer_ttl_seconds=3600, **values)


def new_conversation(new_uow, clock, owner, chatbot_id) -> uuid.UUID:
    with new_uow() as uow:
        return conversations.create_conversation(uow=uow, clock=clock, caller=owner, chatbot_id=chatbot_id).id


def ask_events(new_uow, clock, owner, conversation_id, config, content=QUESTION) -> list:
    return list(
        conversations.answer_stream(
            units=new_uow, clock=clock, config=config, caller=owner, conversation_id=conversation_id, content=content
        )
    )


def ask(new_uow, clock, owner, conversation_id, config, content=QUESTION):
    return ask_events(new_uow, clock, owner, conversation_id, config, content)[-1].message


def knowledge_version(new_uow, chatbot_id) -> int:
    with new_uow() as uow:
        return uow.knowledge.knowledge_version(chatbot_id)


def test_the_same_first_question_is_answered_once_then_streamed_and_stored_from_the_cache(
    new_uow, clock, setup, cache, reads
):
    provider = CountingProvider()
    config = config_of(provider, cache)
    first = ask(new_uow, clock, setup.owner, setup.conversation_id, config)
    second_id = new_conversation(new_uow, clock, setup.owner, setup.chatbot.id)

    events = ask_events(new_uow, clock, setup.owner, second_id, config, content="  how LONG do refunds   take ")

    assert provider.calls == 1 and (reads["miss"], reads["hit"]) == (1, 1)
    _start, cited, *deltas, end = events
    assert isinstance(cited, Citations) and cited.items == first.citations
    assert deltas and all(isinstance(delta, Delta) for delta in deltas)
    assert isinstance(end, MessageEnd)
    answer = end.message
    assert "".join(delta.text for delta in deltas) == answer.content == first.content
    assert answer.content.startswith("Refunds are paid within 14 days")
    assert (answer.provider, answer.finish_reason, answer.fallback) == ("extractive", "stop", False)
    assert answer.usage == {**first.usage, "words_in": first.usage["words_in"]}
    assert "tokens_in" not in answer.usage
    # Stored as every answer is: the question (as asked) and the answer with its citations.
    question, stored = stored_messages(new_uow, second_id)
    assert (question.role, question.content) == ("user", "how LONG do refunds   take")
    assert (stored.role, stored.content, stored.citations, stored.reply_to) == (
        "assistant",
        first.content,
        first.citations,
        question.id,
    )


def test_a_later_turn_of_a_conversation_is_never_answered_from_the_cache(new_uow, clock, setup, cache, reads):
    provider = CountingProvider()
    config = config_of(provider, cache)
    ask(new_uow, clock, setup.owner, setup.conversation_id, config)
    ask(new_uow, clock, setup.owner, setup.conversation_id, config)  # the same question, second turn

    assert provider.calls == 2
    assert (reads["miss"], reads["hit"]) == (1, 0)  # the second turn does not even look


def test_a_change_of_knowledge_is_answered_afresh_with_the_new_citation(new_uow, clock, setup, cache, reads):
    # Its own words (not the refunds of the other tests: the full-text ranking's statistics are
    # the whole session database's, so a test adding refund passages would move their ranks).
    provider = CountingProvider()
    config = config_of(provider, cache)
    question = "Is there a kettle warranty?"
    before = knowledge_version(new_uow, setup.chatbot.id)
    first = ask(new_uow, clock, setup.owner, setup.conversation_id, config, content=question)
    again = ask(
        new_uow, clock, setup.owner, new_conversation(new_uow, clock, setup.owner, setup.chatbot.id), config, question
    )
    assert (first.content, first.citations, again.content) == (conversations.DONT_KNOW, [], conversations.DONT_KNOW)
    assert reads["hit"] == 1  # "I don't know" is an answer too, for this version of the knowledge
    warranty = knowledge.KnowledgeSource("document", uuid.uuid4(), title="Kettle warranty")
    index(new_uow, setup.chatbot.id, warranty, "Every kettle has a kettle warranty of two years.")
    assert knowledge_version(new_uow, setup.chatbot.id) == before + 1

    fresh = ask(
        new_uow, clock, setup.owner, new_conversation(new_uow, clock, setup.owner, setup.chatbot.id), config, question
    )

    assert reads["hit"] == 1  # answered afresh
    assert fresh.content.startswith("Every kettle has a kettle warranty of two years. [1]")
    assert [item["source"]["id"] for item in fresh.citations] == [str(warranty.id)]


@pytest.mark.parametrize("change", ["reindexed", "removed"])
def test_every_writer_of_passages_bumps_the_knowledge_version_in_its_transaction(new_uow, clock, setup, change):
    before = knowledge_version(new_uow, setup.chatbot.id)
    with new_uow() as uow:
        if change == "reindexed":
            knowledge.index_source(uow=uow, clock=clock, chatbot_id=setup.chatbot.id, source=setup.page, passages=[])
        else:
            knowledge.remove_source(
                uow=uow, chatbot_id=setup.chatbot.id, source_type=setup.manual.type, source_id=setup.manual.id
            )
        uow.rollback()  # rolled back: neither the passages nor the version changed
    assert knowledge_version(new_uow, setup.chatbot.id) == before
    with new_uow() as uow:
        if change == "reindexed":
            knowledge.index_source(uow=uow, clock=clock, chatbot_id=setup.chatbot.id, source=setup.page, passages=[])
        else:
            knowledge.remove_source(
                uow=uow, chatbot_id=setup.chatbot.id, source_type=setup.manual.type, source_id=setup.manual.id
            )
    assert knowledge_version(new_uow, setup.chatbot.id) == before + 1


def test_a_change_of_the_chatbots_answer_settings_is_answered_afresh(new_uow, clock, setup, cache):
    provider = CountingProvider()
    config = config_of(provider, cache)
    ask(new_uow, clock, setup.owner, setup.conversation_id, config)
    with new_uow() as uow:
        chatbots.update_chatbot(
            uow=uow,
            clock=clock,
            caller=setup.owner,
            chatbot_id=setup.chatbot.id,
            changes={"instructions": "Answer in one sentence."},
            expected_versions=None,
            meta=RequestMeta(),
        )
    ask(new_uow, clock, setup.owner, new_conversation(new_uow, clock, setup.owner, setup.chatbot.id), config)
    with new_uow() as uow:  # a change of its name changes no answer
        chatbots.update_chatbot(
            uow=uow,
            clock=clock,
            caller=setup.owner,
            chatbot_id=setup.chatbot.id,
            changes={"name": "Shop 2"},
            expected_versions=None,
            meta=RequestMeta(),
        )
    ask(new_uow, clock, setup.owner, new_conversation(new_uow, clock, setup.owner, setup.chatbot.id), config)

    assert provider.calls == 2


def test_two_owners_identical_questions_on_their_own_chatbots_never_share_an_answer(
    new_uow, clock, setup, cache, other_account, reads
):
    with new_uow() as uow:
        other = uow.users.get(uuid.UUID(other_account.id))
    assert other is not None and other.id != setup.owner.id
    meta = RequestMeta()
    with new_uow() as uow:
        twin = chatbots.create_chatbot(uow=uow, clock=clock, caller=other, data={"name": "Shop"}, meta=meta)
        chatbots.update_chatbot(
            uow=uow,
            clock=clock,
            caller=other,
            chatbot_id=twin.id,
            changes={"status": "active"},
            expected_versions=None,
            meta=meta,
        )
    # The same knowledge, the same knowledge version, the same settings and question.
    index(new_uow, twin.id, knowledge.KnowledgeSource("web_page", setup.page.id, url=setup.page.url), RETURNS_PAGE)
    index(new_uow, twin.id, setup.manual, SHIPPING_MANUAL, page=2, heading="Shipping")
    assert knowledge_version(new_uow, twin.id) == knowledge_version(new_uow, setup.chatbot.id)
    provider = CountingProvider()
    config = config_of(provider, cache)

    mine = ask(new_uow, clock, setup.owner, setup.conversation_id, config)
    theirs = ask(new_uow, clock, other, new_conversation(new_uow, clock, other, twin.id), config)

    assert provider.calls == 2 and (reads["miss"], reads["hit"]) == (2, 0)
    assert mine.content == theirs.content  # same knowledge, same answer: composed twice all the same


def test_incomplete_and_fallback_answers_are_not_kept(new_uow, clock, setup, cache, reads):
    failing = ScriptedAnswerProvider(["Refunds [1]", " take"], fail=RuntimeError("gone"), fail_after=1)
    ask(new_uow, clock, setup.owner, setup.conversation_id, config_of(failing, cache))  # finish_reason error
    refusing = ScriptedAnswerProvider(fail=RuntimeError("down"))
    fallback = ask(
        new_uow,
        clock,
        setup.owner,
        new_conversation(new_uow, clock, setup.owner, setup.chatbot.id),
        config_of(refusing, cache, fallback=ExtractiveAnswerProvider()),
    )
    assert fallback.fallback
    stream = conversations.answer_stream(
        units=new_uow,
        clock=clock,
        config=config_of(CountingProvider(), cache),
        caller=setup.owner,
        conversation_id=new_conversation(new_uow, clock, setup.owner, setup.chatbot.id),
        content=QUESTION,
    )
    next(stream), next(stream), next(stream)  # start, citations, a first delta
    stream.close()  # cancelled

    provider = CountingProvider()
    ask(
        new_uow,
        clock,
        setup.owner,
        new_conversation(new_uow, clock, setup.owner, setup.chatbot.id),
        config_of(provider, cache),
    )
    assert provider.calls == 1 and reads["hit"] == 0


def test_an_answer_whose_knowledge_changed_while_it_was_composed_is_not_kept(new_uow, clock, setup, cache):
    extra = knowledge.KnowledgeSource("document", uuid.uuid4(), title="Late news")
    provider = CountingProvider(during=lambda: index(new_uow, setup.chatbot.id, extra, "Kettles ship in blue now."))
    config = config_of(provider, cache)
    ask(new_uow, clock, setup.owner, setup.conversation_id, config)  # knowledge moves mid-answer
    ask(new_uow, clock, setup.owner, new_conversation(new_uow, clock, setup.owner, setup.chatbot.id), config)
    ask(new_uow, clock, setup.owner, new_conversation(new_uow, clock, setup.owner, setup.chatbot.id), config)

    assert provider.calls == 2  # the first was not kept; the second was, and answered the third


def test_a_ttl_of_zero_turns_the_answer_cache_off(new_uow, clock, setup, cache, reads):
    provider = CountingProvider()
    config = ConversationConfig(provider=provider, cache=cache, answer_ttl_seconds=0)
    ask(new_uow, clock, setup.owner, setup.conversation_id, config)
    ask(new_uow, clock, setup.owner, new_conversation(new_uow, clock, setup.owner, setup.chatbot.id), config)
    assert provider.calls == 2 and reads.counts == {}


def test_stateless_questions_without_history_are_cached_and_with_history_are_not(new_uow, clock, setup, cache):
    provider = CountingProvider()
    config = config_of(provider, cache)

    def stateless(history=()):
        events = list(
            conversations.stateless_answer_stream(
                units=new_uow,
                clock=clock,
                config=config,
                caller=setup.owner,
                chatbot_id=setup.chatbot.id,
                content=QUESTION,
                history=history,
            )
        )
        return events[-1]

    first, second = stateless(), stateless()
    stateless([conversations.Turn("user", "Hi"), conversations.Turn("assistant", "Hello")])

    assert provider.calls == 2
    assert (second.text, second.citations, second.finish_reason) == (first.text, first.citations, "stop")


def test_a_redis_that_cannot_be_reached_still_answers_every_question(new_uow, clock, setup, reads):
    cache = Cache(RedisCacheBackend(f"redis://127.0.0.1:{free_port()}/0"), prefix="t", observe=reads)
    provider = CountingProvider()
    config = config_of(provider, cache)
    answers = [
        ask(new_uow, clock, setup.owner, new_conversation(new_uow, clock, setup.owner, setup.chatbot.id), config)
        for _ in range(3)
    ]
    assert provider.calls == 3
    assert {answer.content for answer in answers} == {answers[0].content}
    assert answers[0].content.startswith("Refunds are paid within 14 days")
    assert reads["error"] >= 3 and reads["hit"] == 0


@pytest.mark.parametrize(
    "text",
    [
        "",
        " ",
        "one",
        "Refunds are paid within 14 days. [1]",
        "  a  b\tc\n",
        " ".join(f"w{n}" for n in range(300)) + " ",
    ],
)
def test_a_cached_answer_is_cut_into_deltas_of_eight_words_that_join_to_it(text):
    pieces = conversations.replay_pieces(text)
    assert "".join(pieces) == text
    assert all(len(piece.split()) <= conversations.REPLAY_WORDS_PER_DELTA for piece in pieces)
    assert len(pieces) == -(-len(text.split()) // 8) or (not text.split() and len(pieces) <= 1)


def test_answers_are_shared_through_redis_by_caches_of_their_own(new_uow, clock, setup):
    """Two processes' caches (each its own `Cache` and client) on the Redis of 127.0.0.1:6379,
    under a prefix of this test's own (its keys deleted at the end, nothing else touched)."""
    import redis

    client = redis.Redis.from_url("redis://127.0.0.1:6379/0", socket_timeout=2, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.RedisError:
        pytest.skip("no Redis on 127.0.0.1:6379")
    prefix = f"charter-test-answers-{uuid.uuid4().hex}"
    first_process, second_process = CountingProvider(), CountingProvider()
    try:
        mine = ask(
            new_uow,
            clock,
            setup.owner,
            setup.conversation_id,
            config_of(first_process, Cache(RedisCacheBackend(client=client), prefix=prefix)),
        )
        other = Cache(RedisCacheBackend("redis://127.0.0.1:6379/0"), prefix=prefix)
        theirs = ask(
            new_uow,
            clock,
            setup.owner,
            new_conversation(new_uow, clock, setup.owner, setup.chatbot.id),
            config_of(second_process, other),
        )
        [key] = [key.decode() for key in client.scan_iter(match=f"{prefix}:answers:*")]
    finally:
        keys = list(client.scan_iter(match=f"{prefix}:*"))
        if keys:
            client.delete(*keys)

    assert (first_process.calls, second_process.calls) == (1, 0)
    assert (theirs.content, theirs.citations) == (mine.content, mine.citations)
    assert key.startswith(f"{prefix}:answers:{setup.owner.id}:{setup.chatbot.id}:k")
