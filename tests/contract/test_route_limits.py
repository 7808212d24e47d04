"""Route limits are declared in the contract (`x-rate-limits`) and a malformed one stops the
app from starting, instead of leaving an operation unlimited."""

from __future__ import annotations

import pytest

from server.contract import ContractError, bundle, route_limits
from server.integration.route_limits import limits_by_operation
from server.settings import Settings


def _spec(*limits: dict) -> dict:
    return {"paths": {"/a": {"post": {"operationId": "a", "x-rate-limits": list(limits)}}}}


def test_the_operations_that_guess_at_credentials_send_mail_or_cost_much_are_limited():
    declared = route_limits(bundle())
    assert set(declared) == {
        "login",
        "registerUser",
        "refreshTokens",
        "changePassword",
        "requestPasswordReset",
        "confirmPasswordReset",
        "searchKnowledge",
        "createWebsite",
        "recrawlWebsite",
        "sendMessage",
        "createChatCompletion",
        "startVisitorConversation",
        "sendVisitorMessage",
        "receiveProviderWebhook",
    }
    assert [(limit.per, limit.limit) for limit in declared["searchKnowledge"]] == [("user", "60/minute")]
    for crawl in ("createWebsite", "recrawlWebsite"):  # each starts a crawl of someone's site
        assert [(limit.per, limit.limit) for limit in declared[crawl]] == [("user", "30/minute")]
    # each message retrieves from the chatbot's index and runs its answer provider
    assert [(limit.per, limit.limit) for limit in declared["sendMessage"]] == [("user", "30/minute")]
    assert [(limit.per, limit.limit) for limit in declared["createChatCompletion"]] == [("user", "30/minute")]
    # visitors of public chatbots have no account: per client address
    assert [(limit.per, limit.limit) for limit in declared["startVisitorConversation"]] == [
        ("client", "10/minute;100/hour")
    ]
    assert [(limit.per, limit.limit) for limit in declared["sendVisitorMessage"]] == [("client", "20/minute;300/hour")]
    # payment providers' signed events: per sending address, well above a provider's bursts
    assert [(limit.per, limit.limit) for limit in declared["receiveProviderWebhook"]] == [("client", "600/minute")]
    assert [(limit.per, limit.limit) for limit in declared["login"]] == [
        ("client", "10/minute"),
        ("account", "5/minute;20/hour"),
    ]


@pytest.mark.parametrize(
    ("limits", "complaint"),
    [
        ([], "non-empty list"),
        ([{"name": "a", "per": "client"}], "exactly name, per and limit"),
        ([{"name": "A-b", "per": "client", "limit": "1/minute"}], "snake_case"),
        ([{"name": "a", "per": "planet", "limit": "1/minute"}], "per must be one of"),
        ([{"name": "a", "per": "client", "limit": "often"}], "malformed"),
        (
            [{"name": "a", "per": "client", "limit": "1/minute"}, {"name": "a", "per": "user", "limit": "2/minute"}],
            "two different limits",
        ),
    ],
)
def test_a_malformed_limit_is_refused(limits, complaint):
    with pytest.raises(ContractError, match=complaint):
        route_limits(_spec(*limits))


@pytest.mark.parametrize(
    ("operation_id", "name", "setting"),
    [
        ("sendMessage", "conversation_message", "rate_limit_conversation_message"),
        ("createChatCompletion", "chat_completion", "rate_limit_chat_completion"),
        ("searchKnowledge", "knowledge_search", "rate_limit_knowledge_search"),
    ],
)
def test_a_setting_replaces_the_contracts_figure_of_an_answer_limit(operation_id, name, setting):
    """The costly answer operations' limits can be raised for load tests and fuzzing (scripts/fuzz.py
    sets them far above its pace, or it would mostly see 429) and default to the contract's."""
    spec = bundle()
    declared = {limit.name: limit.limit for limit in route_limits(spec)[operation_id]}
    defaults = Settings(jwt_secret="x" * 48)
    raised = defaults.model_copy(update={setting: "1000000/minute"})
    assert {entry[2]: entry[0] for entry in limits_by_operation(spec, defaults)[operation_id]} == declared
    assert {entry[2]: entry[0] for entry in limits_by_operation(spec, raised)[operation_id]}[name] == "1000000/minute"
