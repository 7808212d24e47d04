"""The plan catalogue is cached (issue 18, "Caching": read-mostly data): `GET /api/v1/plans` is
read from the cache after its first answer, carries a strong ETag and `Cache-Control`, answers
304 to a current `If-None-Match`, and a plan an administrator adds is listed at once (its
creation forgets the cached list when it commits)."""

from __future__ import annotations

from prometheus_client import REGISTRY

from tests.billing.conftest import forget_catalogue
from tests.billing.test_billing_api import add_plan


def _hits() -> float:
    return REGISTRY.get_sample_value("charter_cache_requests_total", {"cache": "plans", "outcome": "hit"}) or 0.0


def test_the_plan_list_is_cached_with_an_etag_and_a_304(app, client):
    forget_catalogue(app)
    first = client.get("/api/v1/plans")
    assert first.status_code == 200
    tag = first.headers["etag"]
    assert first.headers["cache-control"] == "public, max-age=60"
    hits = _hits()
    second = client.get("/api/v1/plans")
    assert second.json() == first.json() and second.headers["etag"] == tag
    assert _hits() == hits + 1  # the second answer came from the cache
    unchanged = client.get("/api/v1/plans", headers={"If-None-Match": tag})
    assert unchanged.status_code == 304 and unchanged.content == b""
    assert unchanged.headers["etag"] == tag
    assert client.get("/api/v1/plans", headers={"If-None-Match": '"0123"'}).status_code == 200


def test_a_plan_an_administrator_adds_is_listed_at_once(app, client, admin, retire_plans):
    forget_catalogue(app)
    before = client.get("/api/v1/plans")
    client.get("/api/v1/plans")  # cached now
    created = add_plan(client, admin)
    assert created.status_code == 201, created.text
    retire_plans.append(created.json()["code"])
    after = client.get("/api/v1/plans")
    assert created.json()["code"] in {plan["code"] for plan in after.json()["items"]}
    assert after.headers["etag"] != before.headers["etag"]
    assert client.get("/api/v1/plans", headers={"If-None-Match": before.headers["etag"]}).status_code == 200
