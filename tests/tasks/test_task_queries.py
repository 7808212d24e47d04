"""GET /api/v1/users/{user_id}/tasks: every filter alone and combined, free-text search, the
sort allow-list, relevance order, and keyset pagination that stays exact under every sort
(mixed directions, many ties, tasks added between pages) — on SQLite and on PostgreSQL.

Every test registers its own account, so the expected sets and counts are exact.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.helpers import VALIDATION, assert_problem, register_and_login
from tests.tasks.conftest import (
    IS_POSTGRES,
    bulk,
    bulk_create,
    expected_order,
    frozen_clock,
    ids,
    list_all,
    list_page,
    parameters,
    rfc3339,
)

# --------------------------------------------------------------------------------------------
# Filters and search
# --------------------------------------------------------------------------------------------


@pytest.fixture
def catalogue(client) -> tuple[Any, dict[str, dict[str, Any]], datetime]:
    """A fresh account with six tasks covering every filter, by letter:

    ====  ========  ========  ===============  ============  =========
    task  priority  done      tags             due           overdue
    ====  ========  ========  ===============  ============  =========
    a     high      open      reports, work    2 days ago    yes
    b     low       open      home             none          no
    c     urgent    open      home, urgent     in 5 days     no
    d     high      done      work             2 days ago    no (done)
    e     medium    open      -                in 60 days    no
    f     urgent    done      reports, work    in 5 days     no
    ====  ========  ========  ===============  ============  =========
    """
    account = register_and_login(client)
    now = datetime.now(UTC).replace(microsecond=0)
    past, soon, later = now - timedelta(days=2), now + timedelta(days=5), now + timedelta(days=60)
    bodies = {
        "a": {
            "title": "Write quarterly report",
            "description": "Numbers from finance",
            "priority": "high",
            "tags": ["Work", "reports"],
            "due_at": rfc3339(past),
        },
        "b": {"title": "Buy milk", "priority": "low", "tags": ["home"]},
        "c": {
            "title": "Call plumber",
            "description": "About the kitchen sink report",
            "priority": "urgent",
            "tags": ["home", "urgent"],
            "due_at": rfc3339(soon),
        },
        "d": {
            "title": "File taxes",
            "description": "Before the deadline",
            "priority": "high",
            "tags": ["work"],
            "due_at": rfc3339(past),
        },
        "e": {"title": "Plan holiday", "description": "Flights and hotel", "due_at": rfc3339(later)},
        "f": {
            "title": "Team meeting",
            "description": "Quarterly planning with the team",
            "priority": "urgent",
            "tags": ["work", "REPORTS"],
            "due_at": rfc3339(soon),
        },
    }
    created = dict(zip(bodies, bulk_create(client, account, list(bodies.values())), strict=True))
    done = bulk(client, account, [{"op": "complete", "id": created[name]["id"]} for name in ("d", "f")])
    assert [result["status"] for result in done.json()["results"]] == [200, 200]
    for name in ("d", "f"):
        created[name] = next(r["task"] for r in done.json()["results"] if r["id"] == created[name]["id"])
    return account, created, now


def names(catalogue_tasks: dict[str, dict[str, Any]], items: list[dict[str, Any]]) -> set[str]:
    """The letters of the catalogue tasks among `items` (every item must be one of them)."""
    by_id = {task["id"]: name for name, task in catalogue_tasks.items()}
    return {by_id[item["id"]] for item in items}


def matching(client, catalogue, *, limit: int = 100, **params: Any) -> set[str]:
    """The catalogue letters a query answers (all pages)."""
    account, tasks, _ = catalogue
    return names(tasks, list_all(client, account, limit=limit, **params))


class TestFilters:
    def test_without_filters_every_task(self, client, catalogue):
        assert matching(client, catalogue) == set("abcdef")

    @pytest.mark.parametrize(("value", "expected"), [("true", "df"), ("false", "abce")])
    def test_completed(self, client, catalogue, value, expected):
        assert matching(client, catalogue, completed=value) == set(expected)

    @pytest.mark.parametrize(
        ("priority", "expected"),
        [
            ("high", "ad"),
            ("low", "b"),
            ("medium", "e"),
            (["high", "urgent"], "acdf"),
            (["low", "medium", "high", "urgent"], "abcdef"),
        ],
    )
    def test_priority_repeatable(self, client, catalogue, priority, expected):
        assert matching(client, catalogue, priority=priority) == set(expected)

    def test_priority_outside_the_enum_is_400(self, client, catalogue):
        account, _, _ = catalogue
        response = client.get(account.tasks_path, params={"priority": "critical"}, headers=account.headers)
        assert ("priority", "query") in parameters(assert_problem(response, 400, VALIDATION))

    @pytest.mark.parametrize(
        ("tag", "expected"),
        [
            ("work", "adf"),
            ("WORK", "adf"),  # compared after normalising, like stored tags
            ("  Home  ", "bc"),
            (["work", "reports"], "af"),  # must carry every one
            (["Reports", "WORK", "work"], "af"),
            (["home", "work"], ""),
            ("nothing-like-this", ""),
        ],
    )
    def test_tag_repeatable_means_all(self, client, catalogue, tag, expected):
        assert matching(client, catalogue, tag=tag) == set(expected)

    def test_due_before_and_after_leave_out_tasks_without_due_date(self, client, catalogue):
        _, _, now = catalogue
        assert matching(client, catalogue, due_before=rfc3339(now)) == set("ad")
        assert matching(client, catalogue, due_before=rfc3339(now + timedelta(days=10))) == set("acdf")
        assert matching(client, catalogue, due_before="9999-12-31T23:59:59Z") == set("acdef")  # never b
        assert matching(client, catalogue, due_after=rfc3339(now)) == set("cef")
        assert matching(client, catalogue, due_after=rfc3339(now + timedelta(days=10))) == set("e")
        assert matching(client, catalogue, due_after="0001-01-01T00:00:00Z") == set("acdef")  # never b
        window = {"due_after": rfc3339(now), "due_before": rfc3339(now + timedelta(days=10))}
        assert matching(client, catalogue, **window) == set("cf")

    def test_due_after_is_inclusive_and_due_before_exclusive(self, client, catalogue):
        _, tasks, _ = catalogue
        due_e = tasks["e"]["due_at"]
        assert "e" in matching(client, catalogue, due_after=due_e)
        assert "e" not in matching(client, catalogue, due_before=due_e)

    def test_due_filters_accept_any_utc_offset(self, client, catalogue):
        _, _, now = catalogue
        # The same instant as `now`, written with a +02:00 offset.
        shifted = (now + timedelta(hours=2)).replace(tzinfo=None).isoformat() + "+02:00"
        assert matching(client, catalogue, due_before=shifted) == set("ad")

    def test_overdue_true_is_open_and_past_due(self, client, catalogue):
        assert matching(client, catalogue, overdue="true") == {"a"}

    def test_overdue_false_is_every_other_task(self, client, catalogue):
        # d is done although its due date has passed; b has no due date at all.
        assert matching(client, catalogue, overdue="false") == set("bcdef")

    def test_created_after_is_inclusive(self, client, catalogue):
        _, tasks, _ = catalogue
        threshold = tasks["c"]["created_at"]
        expected = {name for name, task in tasks.items() if task["created_at"] >= threshold}
        assert "c" in expected and "a" not in expected
        assert matching(client, catalogue, created_after=threshold) == expected
        assert matching(client, catalogue, created_after="2000-01-01T00:00:00Z") == set("abcdef")
        assert matching(client, catalogue, created_after=rfc3339(datetime.now(UTC) + timedelta(days=1))) == set()

    @pytest.mark.parametrize(
        ("q", "expected"),
        [
            ("milk", "b"),  # a word of a title
            ("MILK", "b"),  # case does not matter
            ("kitchen", "c"),  # a word found only in a description
            ("quarterly", "af"),  # in a title (a) and in a description (f)
            ("report", "ac"),
            ("quarterly report", "a"),  # every word must match
            ("plumber kitchen", "c"),  # one word in the title, the other in the description
            ("milk plumber", ""),
            ("zebra", ""),  # no match: an empty page
        ],
    )
    def test_free_text(self, client, catalogue, q, expected):
        assert matching(client, catalogue, q=q) == set(expected)

    @pytest.mark.skipif(not IS_POSTGRES, reason="English stemming is PostgreSQL full-text search")
    def test_free_text_uses_english_stemming_on_postgres(self, client, catalogue):
        assert matching(client, catalogue, q="reports") == set("ac")  # "report" in a and c
        assert matching(client, catalogue, q="planned") == set("ef")  # "plan", "planning"

    def test_free_text_wildcards_are_literal(self, client):
        account = register_and_login(client)
        bulk_create(client, account, [{"title": "50% off"}, {"title": "500 items"}, {"title": "Sale"}])
        assert [item["title"] for item in list_page(client, account, q="50%")["items"]] == ["50% off"]

    def test_free_text_every_word_counts_even_after_the_tenth(self, client):
        account = register_and_login(client)
        words = "alpha bravo charlie delta echo foxtrot golf hotel india juliet"
        bulk_create(client, account, [{"title": words}])
        assert len(list_page(client, account, q=words)["items"]) == 1
        assert list_page(client, account, q=f"{words} kilo")["items"] == []

    @pytest.mark.parametrize(
        ("name", "value"),
        [
            ("due_before", "0001-01-01T00:00:00+01:00"),  # before year 1 in UTC
            ("due_after", "9999-12-31T23:59:59-01:00"),  # after year 9999 in UTC
            ("created_after", "0001-01-01T00:30:00+01:00"),
        ],
    )
    def test_instant_python_cannot_represent_is_400_naming_the_parameter(self, client, account, name, value):
        response = client.get(account.tasks_path, params={name: value}, headers=account.headers)
        assert (name, "query") in parameters(assert_problem(response, 400, VALIDATION))

    def test_tag_filter_too_long_after_normalising_names_the_parameter(self, client, account):
        response = client.get(account.tasks_path, params={"tag": "\u0130" * 40}, headers=account.headers)
        assert ("tag", "query") in parameters(assert_problem(response, 400, VALIDATION))

    @pytest.mark.parametrize(
        ("params", "expected"),
        [
            ({"completed": "false", "priority": ["high", "urgent"], "tag": "work"}, "a"),
            ({"completed": "false", "tag": "home", "due_after": "NOW"}, "c"),
            ({"completed": "true", "q": "quarterly"}, "f"),
            ({"overdue": "false", "priority": "high"}, "d"),
            ({"overdue": "false", "tag": ["reports"], "q": "quarterly"}, "f"),
            ({"completed": "true", "overdue": "true"}, ""),
            ({"priority": "urgent", "due_before": "NOW+10"}, "cf"),
            (
                {
                    "completed": "false",
                    "priority": ["high", "urgent"],
                    "tag": ["Work"],
                    "due_after": "NOW-10",
                    "due_before": "NOW+10",
                    "overdue": "true",
                    "created_after": "2000-01-01T00:00:00Z",
                    "q": "report",
                },
                "a",
            ),
        ],
    )
    def test_filters_combine_with_and(self, client, catalogue, params, expected):
        _, _, now = catalogue
        moments = {"NOW": now, "NOW+10": now + timedelta(days=10), "NOW-10": now - timedelta(days=10)}
        params = {
            key: rfc3339(moments[value]) if isinstance(value, str) and value in moments else value
            for key, value in params.items()
        }
        assert matching(client, catalogue, **params) == set(expected)
        assert matching(client, catalogue, limit=1, **params) == set(expected)  # and page by page

    def test_filtered_pages_follow_the_sort(self, client, catalogue):
        account, tasks, _ = catalogue
        items = list_all(client, account, limit=1, priority=["high", "urgent"], sort="due_at,-priority")
        assert names(tasks, items) == set("acdf")
        assert ids(items) == expected_order(items, "due_at,-priority")
        # Due 2 days ago: a and d (both high, by id); in 5 days: c and f (both urgent, by id).
        assert {items[0]["id"], items[1]["id"]} == {tasks["a"]["id"], tasks["d"]["id"]}


# --------------------------------------------------------------------------------------------
# Sort
# --------------------------------------------------------------------------------------------

T1 = datetime(2024, 3, 1, 9, 0, 0, tzinfo=UTC)
T2 = datetime(2024, 3, 2, 9, 0, 0, 500000, tzinfo=UTC)
T3 = datetime(2024, 3, 3, 9, 0, 0, 250000, tzinfo=UTC)
D1 = "2030-05-01T12:00:00Z"
D2 = "2029-01-01T00:00:00+02:00"
PAST = "2020-03-01T08:00:00Z"
ANCIENT = "0999-06-01T00:00:00Z"

SORTS = [
    None,
    "due_at",
    "-due_at",
    "priority",
    "-priority",
    "created_at",
    "-created_at",
    "updated_at",
    "-updated_at",
    "title",
    "-title",
    "-priority,due_at",
    "priority,-due_at",
    "due_at,-title",
    "-title,priority,created_at",
    "title,-priority,-updated_at",
    "-updated_at,title",
    "priority,title,due_at",
    "-due_at,-priority,-title",
    "updated_at,-created_at,priority",
]


def seed_with_ties(client, account, monkeypatch) -> list[dict[str, Any]]:
    """14 tasks with many ties: six created at T1, five at T2 (equal created_at), three now;
    four of them completed at T3 (equal updated_at); six of priority medium; five due at D1
    and four without a due date; titles repeated."""
    with frozen_clock(monkeypatch, T1):
        first = bulk_create(
            client,
            account,
            [
                {"title": "bravo", "priority": "medium", "due_at": D1},
                {"title": "alpha", "priority": "medium"},
                {"title": "bravo", "priority": "high", "due_at": D1},
                {"title": "charlie", "priority": "medium", "due_at": None},
                {"title": "alpha", "priority": "low", "due_at": PAST},
                {"title": "delta", "priority": "medium", "due_at": D1},
            ],
        )
    with frozen_clock(monkeypatch, T2):
        second = bulk_create(
            client,
            account,
            [
                {"title": "alpha", "priority": "urgent", "due_at": D2},
                {"title": "charlie", "priority": "medium", "due_at": D1},
                {"title": "bravo", "priority": "high"},
                {"title": "echo", "priority": "medium", "due_at": ANCIENT},
                {"title": "alpha", "priority": "high", "due_at": D2},
            ],
        )
    third = bulk_create(
        client,
        account,
        [
            {"title": "delta", "priority": "low"},
            {"title": "bravo", "priority": "medium", "due_at": D1},
            {"title": "foxtrot", "priority": "urgent", "due_at": PAST},
        ],
    )
    with frozen_clock(monkeypatch, T3):
        completing = [first[0], first[3], second[1], second[2]]
        response = bulk(client, account, [{"op": "complete", "id": task["id"]} for task in completing])
        results = response.json()["results"]
        assert [result["status"] for result in results] == [200] * 4
    completed = {result["id"]: result["task"] for result in results}
    tasks = [completed.get(task["id"], task) for task in first + second + third]
    assert len({task["id"] for task in tasks}) == 14
    return tasks


class TestSort:
    def test_tasks_without_due_date_sort_last_ascending_and_first_descending(self, client, monkeypatch):
        account = register_and_login(client)
        seed_with_ties(client, account, monkeypatch)
        ascending = list_page(client, account, limit=100, sort="due_at")["items"]
        descending = list_page(client, account, limit=100, sort="-due_at")["items"]
        assert [item["due_at"] for item in ascending[-4:]] == [None] * 4
        assert all(item["due_at"] for item in ascending[:-4])
        assert [item["due_at"] for item in descending[:4]] == [None] * 4
        # A due date before the year 1000 is still the earliest.
        assert ascending[0]["due_at"].startswith("0999-06-01")
        # Ties (no due date) are broken by id, ascending with an ascending sort.
        assert ids(ascending[-4:]) == sorted(ids(ascending[-4:]))
        assert ids(descending[:4]) == sorted(ids(descending[:4]), reverse=True)

    def test_multi_key_with_mixed_directions(self, client, monkeypatch):
        account = register_and_login(client)
        seed_with_ties(client, account, monkeypatch)
        items = list_page(client, account, limit=100, sort="-priority,due_at")["items"]
        ranks = [("low", "medium", "high", "urgent").index(item["priority"]) for item in items]
        assert ranks == sorted(ranks, reverse=True)
        urgent = [item for item in items if item["priority"] == "urgent"]
        assert [item["due_at"] for item in urgent] == ["2020-03-01T08:00:00.000000Z", "2028-12-31T22:00:00.000000Z"]
        medium = [item for item in items if item["priority"] == "medium"]
        assert medium[0]["due_at"].startswith("0999") and medium[-1]["due_at"] is None

    def test_title_ties_are_broken_by_id(self, client, monkeypatch):
        account = register_and_login(client)
        seed_with_ties(client, account, monkeypatch)
        items = list_page(client, account, limit=100, sort="title")["items"]
        alphas = [item["id"] for item in items if item["title"] == "alpha"]
        assert len(alphas) == 4
        assert ids(items)[:4] == alphas == sorted(alphas)
        items = list_page(client, account, limit=100, sort="-title")["items"]
        assert ids(items)[-4:] == sorted(alphas, reverse=True)

    def test_q_with_sort_follows_the_sort(self, client):
        account = register_and_login(client)
        bulk_create(
            client,
            account,
            [
                {"title": "charlie invoice"},
                {"title": "alpha", "description": "invoice for alpha"},
                {"title": "bravo invoice", "description": "invoice again"},
                {"title": "delta"},
            ],
        )
        items = list_all(client, account, limit=1, q="invoice", sort="title")
        assert [item["title"] for item in items] == ["alpha", "bravo invoice", "charlie invoice"]

    @pytest.mark.parametrize(
        "sort",
        [
            "foo",  # not in the allow-list
            "id",
            "completed",
            "description",
            "-priority,foo",
            "title,-title",  # the same field twice
            "priority,priority",
            "due_at,priority,title,created_at",  # 4 fields
            "Title",
            "title,",
            "+title",
        ],
    )
    def test_invalid_sort_is_400_naming_the_parameter(self, client, account, sort):
        response = client.get(account.tasks_path, params={"sort": sort}, headers=account.headers)
        problem = assert_problem(response, 400, VALIDATION)
        assert ("sort", "query") in parameters(problem)


# --------------------------------------------------------------------------------------------
# Keyset pagination
# --------------------------------------------------------------------------------------------


class TestKeysetPagination:
    @pytest.mark.parametrize("sort", SORTS)
    def test_pages_stay_exact_under_every_sort(self, client, monkeypatch, sort):
        """Page by 3 while tasks are added between the pages: nothing seen comes again and no
        original task is skipped. Then page by 2: the pages concatenate to the whole list."""
        account = register_and_login(client)
        seeded = seed_with_ties(client, account, monkeypatch)
        params = {"sort": sort} if sort else {}
        original = ids(list_page(client, account, limit=100, **params)["items"])
        assert original == expected_order(seeded, sort)
        additions = [
            # First or last under most keys, and ties with existing tasks under the others.
            [{"title": "aardvark", "priority": "urgent", "due_at": ANCIENT}, {"title": "zulu", "priority": "low"}],
            [{"title": "bravo", "priority": "medium", "due_at": D1}, {"title": "alpha", "priority": "high"}],
            [{"title": "charlie", "priority": "urgent", "due_at": PAST}],
        ]
        seen: list[str] = []
        added: list[str] = []
        cursor = None
        for page_number in range(50):
            page = list_page(client, account, limit=3, **params, **({"cursor": cursor} if cursor else {}))
            seen += ids(page["items"])
            cursor = page["next_cursor"]
            if cursor is None:
                break
            if page_number < len(additions):
                added += ids(bulk_create(client, account, additions[page_number]))
        assert len(added) == 5
        assert len(seen) == len(set(seen)), "an item came twice"
        assert [task_id for task_id in seen if task_id in set(original)] == original, "an item was skipped"
        assert set(seen) <= set(original) | set(added)
        final = list_page(client, account, limit=100, **params)["items"]
        assert len(final) == 14 + 5
        assert ids(final) == expected_order(final, sort)
        # What was seen is in the final order: every page continued from the cursor's position.
        assert seen == [task_id for task_id in ids(final) if task_id in set(seen)]
        assert ids(list_all(client, account, limit=2, **params)) == ids(final)

    @pytest.mark.parametrize("sort", ["-priority,due_at", "title,-priority,-updated_at", "due_at"])
    def test_one_per_page(self, client, monkeypatch, sort):
        account = register_and_login(client)
        seeded = seed_with_ties(client, account, monkeypatch)
        assert ids(list_all(client, account, limit=1, sort=sort)) == expected_order(seeded, sort)

    def test_deleted_boundary_task_does_not_break_the_cursor(self, client, monkeypatch):
        account = register_and_login(client)
        seeded = seed_with_ties(client, account, monkeypatch)
        sort = "-priority,due_at"
        first = list_page(client, account, limit=3, sort=sort)
        boundary = first["items"][-1]["id"]
        assert client.delete(f"{account.tasks_path}/{boundary}", headers=account.headers).status_code == 204
        rest = list_all(client, account, limit=3, sort=sort, cursor=first["next_cursor"])
        assert ids(first["items"]) + ids(rest) == expected_order(seeded, sort)

    def test_cursor_of_another_sort_is_400(self, client, monkeypatch):
        account = register_and_login(client)
        seed_with_ties(client, account, monkeypatch)
        cursor = list_page(client, account, limit=2, sort="due_at")["next_cursor"]
        assert cursor
        assert list_page(client, account, limit=2, sort="due_at", cursor=cursor)["items"]
        for other in ({"sort": "-due_at"}, {"sort": "priority"}, {"sort": "due_at,title"}, {}, {"q": "alpha"}):
            response = client.get(
                account.tasks_path, params={"limit": 2, "cursor": cursor, **other}, headers=account.headers
            )
            problem = assert_problem(response, 400, VALIDATION)
            assert ("cursor", "query") in parameters(problem), other

    def test_default_order_cursor_is_refused_under_a_sort(self, client, monkeypatch):
        account = register_and_login(client)
        seed_with_ties(client, account, monkeypatch)
        cursor = list_page(client, account, limit=2)["next_cursor"]
        for other in ({"sort": "created_at"}, {"sort": "title"}, {"q": "alpha"}):
            response = client.get(
                account.tasks_path, params={"limit": 2, "cursor": cursor, **other}, headers=account.headers
            )
            assert ("cursor", "query") in parameters(assert_problem(response, 400, VALIDATION)), other
        # "-created_at" is the default order: its cursor is the same position.
        assert list_page(client, account, limit=2, cursor=cursor, sort="-created_at")["items"]

    def test_cursor_of_another_search_is_400(self, client, monkeypatch):
        account = register_and_login(client)
        seed_with_ties(client, account, monkeypatch)
        cursor = list_page(client, account, limit=1, q="alpha")["next_cursor"]
        assert cursor
        assert list_page(client, account, limit=1, q="alpha", cursor=cursor)["items"]
        for other in ({"q": "bravo"}, {"q": "alpha bravo"}, {}, {"q": "alpha", "sort": "title"}):
            response = client.get(
                account.tasks_path, params={"limit": 1, "cursor": cursor, **other}, headers=account.headers
            )
            assert ("cursor", "query") in parameters(assert_problem(response, 400, VALIDATION)), other


# --------------------------------------------------------------------------------------------
# Relevance
# --------------------------------------------------------------------------------------------


class TestRelevance:
    def test_more_matches_rank_first(self, client):
        account = register_and_login(client)
        both, title, description = bulk_create(
            client,
            account,
            [
                {"title": "Invoice archive", "description": "Every invoice of last year"},
                {"title": "Invoice for March"},
                {"title": "Pay bills", "description": "The invoice from the plumber"},
            ],
        )
        bulk_create(client, account, [{"title": "Unrelated", "description": "Nothing to see"}])
        items = list_page(client, account, q="invoice")["items"]
        assert set(ids(items)) == {both["id"], title["id"], description["id"]}
        # Created first, yet first: relevance, not the default newest-first order.
        assert items[0]["id"] == both["id"]

    def test_word_in_title_ranks_before_word_only_in_description(self, client):
        account = register_and_login(client)
        # The title match is created first, so newest-first would put it last.
        title, description = bulk_create(
            client,
            account,
            [{"title": "Invoice for March"}, {"title": "Pay bills", "description": "The invoice from the plumber"}],
        )
        items = list_page(client, account, q="invoice")["items"]
        assert ids(items) == [title["id"], description["id"]]

    def test_paging_under_relevance_order(self, client, monkeypatch):
        account = register_and_login(client)
        with frozen_clock(monkeypatch, T1):  # equal created_at too: ties down to the id
            matches = bulk_create(
                client,
                account,
                [
                    {"title": "Invoice one"},
                    {"title": "Invoice two"},
                    {"title": "Invoice three"},
                    {"title": "Pay", "description": "invoice in the description"},
                    {"title": "Send", "description": "the invoice, at last"},
                    {"title": "Print", "description": "an invoice"},
                    {"title": "Invoice archive", "description": "every invoice"},
                    {"title": "Invoice box", "description": "invoice invoice"},
                ],
            )
        matches += bulk_create(
            client, account, [{"title": "Invoice later"}, {"title": "Mail", "description": "invoice copy"}]
        )
        bulk_create(client, account, [{"title": "Other"}, {"title": "Another", "description": "nothing"}])
        whole = list_page(client, account, limit=100, q="invoice")["items"]
        assert sorted(ids(whole)) == sorted(ids(matches))
        for limit in (1, 2, 3):
            assert ids(list_all(client, account, limit=limit, q="invoice")) == ids(whole), f"limit={limit}"
        # The tasks naming the word in both title and description come before the others.
        both = {matches[6]["id"], matches[7]["id"]}
        assert set(ids(whole)[:2]) == both

    def test_tasks_added_while_paging_by_relevance(self, client):
        account = register_and_login(client)
        original = bulk_create(
            client,
            account,
            [{"title": f"Report {word}"} for word in ("one", "two", "three")]
            + [{"title": "Note", "description": f"report {word}"} for word in ("four", "five")],
        )
        first = list_page(client, account, limit=2, q="report")
        added = bulk_create(client, account, [{"title": "Report new", "description": "report again"}])
        rest = list_all(client, account, limit=2, q="report", cursor=first["next_cursor"])
        seen = ids(first["items"]) + ids(rest)
        assert len(seen) == len(set(seen))
        assert set(ids(original)) <= set(seen)
        assert set(seen) <= set(ids(original) + ids(added))
