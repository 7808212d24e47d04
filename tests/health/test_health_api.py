"""GET /, the health probes (liveness, readiness, with and without a database), and the
served contract and its documentation."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import yaml

from server.contract import bundle
from tests.helpers import PASSWORD, ROOT, ContractClient, app_client, assert_problem, instant, root_logging_kept

UNREACHABLE_DATABASE = "postgresql+psycopg://postgres@127.0.0.1:1/nothing"  # nothing listens on port 1


def _contract_version() -> str:
    with (ROOT / "openapi" / "openapi.yaml").open(encoding="utf-8") as stream:
        return yaml.safe_load(stream)["info"]["version"]


def _recent(timestamp: str) -> bool:
    moment = instant(timestamp)
    return moment.tzinfo is not None and abs(datetime.now(UTC) - moment) < timedelta(minutes=5)


def _references(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [ref for value in node.values() for ref in _references(value)]
    if isinstance(node, list):
        return [ref for item in node for ref in _references(item)]
    return []


def _assert_internal_references_only(document: dict[str, Any]) -> set[str]:
    """Every `$ref` is `#/...` (no file) and resolves inside `document`; returns them."""
    refs = set(_references(document))
    assert sorted(ref for ref in refs if not ref.startswith("#/")) == []
    for ref in refs:
        node: Any = document
        for token in ref[2:].split("/"):
            node = node[token.replace("~1", "/").replace("~0", "~")]
        assert node is not None, ref
    return refs


class TestServiceInfo:
    def test_describes_the_service(self, client):
        response = client.get("/")
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("application/json")
        assert response.headers["x-request-id"]
        body = response.json()
        assert body == {
            "name": "Charter API",
            "version": _contract_version(),
            "status": "running",
            "docs_url": "/api/v1/ui/",
            "openapi_url": "/api/v1/openapi.json",
            "api_prefix": "/api/v1",
        }

    def test_the_urls_it_names_are_served(self, client):
        body = client.get("/").json()
        assert client.get(body["openapi_url"], validate=False).status_code == 200
        assert client.get(body["docs_url"], validate=False).status_code == 200

    def test_needs_no_authentication(self, client):
        response = client.get("/", headers={"Authorization": "Bearer not.a.jwt"})
        assert response.status_code == 200


class TestHealth:
    def test_healthy(self, client):
        response = client.get("/api/v1/health")
        assert response.status_code == 200
        body = response.json()
        assert body["status"] == "healthy"
        assert body["version"] == _contract_version()
        assert body["timestamp"].endswith("Z") and _recent(body["timestamp"])

    def test_liveness_uptime_grows(self, client):
        first = client.get("/api/v1/health/live")
        time.sleep(0.01)
        second = client.get("/api/v1/health/live")
        assert first.status_code == second.status_code == 200
        assert first.json()["status"] == second.json()["status"] == "alive"
        assert first.json()["version"] == _contract_version()
        assert 0 <= first.json()["uptime_seconds"] < second.json()["uptime_seconds"]
        assert _recent(second.json()["timestamp"])

    def test_ready_when_the_database_answers(self, client):
        response = client.get("/api/v1/health/ready")
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["status"] == "ready"
        assert body["checks"] == {"database": "ok", "redis": "not_configured"}
        assert body["version"] == _contract_version()

    def test_unknown_query_parameter_is_refused(self, client):
        problem = assert_problem(client.get("/api/v1/health?verbose=1"), 400, "/problems/validation-error")
        assert {"parameter": "verbose", "in": "query"}.items() <= problem["errors"][0].items()


@pytest.fixture(scope="module")
def offline_client(tmp_path_factory: pytest.TempPathFactory, openapi) -> Iterator[ContractClient]:
    """An app whose database does not answer (connection refused on 127.0.0.1:1)."""
    var_dir = tmp_path_factory.mktemp("offline")
    with (
        root_logging_kept(),  # create_app reconfigures logging
        app_client(UNREACHABLE_DATABASE, var_dir, openapi, db_connect_timeout_seconds=1) as (_, client),
    ):
        yield client


class TestWithoutDatabase:
    def test_not_ready_names_the_database(self, offline_client):
        started = time.monotonic()
        response = offline_client.get("/api/v1/health/ready")
        assert time.monotonic() - started < 5
        problem = assert_problem(response, 503, "/problems/not-ready")
        assert problem["checks"] == {"database": "unavailable", "redis": "not_configured"}
        assert problem["instance"] == "/api/v1/health/ready"
        assert response.headers["retry-after"].isdigit()

    def test_liveness_and_health_do_not_need_the_database(self, offline_client):
        assert offline_client.get("/api/v1/health").json()["status"] == "healthy"
        assert offline_client.get("/api/v1/health/live").json()["status"] == "alive"
        assert offline_client.get("/").status_code == 200

    @pytest.mark.parametrize(
        ("path", "body"),
        [
            ("/api/v1/auth/login", {"email": "ada@example.com", "password": PASSWORD}),
            ("/api/v1/auth/register", {"email": "ada@example.com", "password": PASSWORD, "display_name": "Ada"}),
            ("/api/v1/auth/refresh", {"refresh_token": "x" * 43}),
        ],
    )
    def test_database_operation_is_503_not_500(self, offline_client, path: str, body: dict[str, Any]):
        response = offline_client.post(path, json=body)
        problem = assert_problem(response, 503, "/problems/service-unavailable")
        assert response.headers["retry-after"].isdigit()
        text = json.dumps(problem)
        assert "127.0.0.1" not in text and "psycopg" not in text and "OperationalError" not in text


class TestServedContract:
    def test_is_the_bundled_contract(self, client):
        response = client.get("/api/v1/openapi.json", validate=False)
        assert response.status_code == 200
        assert response.json() == json.loads(json.dumps(bundle()))

    def test_serves_the_contract_as_json(self, client):
        response = client.get("/api/v1/openapi.json", validate=False)
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("application/json")
        served, bundled = response.json(), json.loads(json.dumps(bundle()))
        for key in ("openapi", "info", "tags", "security"):
            assert served[key] == bundled[key], key
        assert served["paths"].keys() == bundled["paths"].keys()
        for kind, section in bundled["components"].items():
            assert served["components"][kind].keys() == section.keys(), kind

    def test_has_no_reference_to_a_file(self, client):
        document = client.get("/api/v1/openapi.json", validate=False).json()
        _assert_internal_references_only(document)

    def test_bundle_keeps_named_components_with_internal_references(self):
        document = json.loads(json.dumps(bundle()))
        refs = _assert_internal_references_only(document)
        assert "#/components/schemas/ServiceInfo" in refs
        assert "#/components/headers/X-Request-ID" in refs

    def test_documents_every_operation(self, client):
        document = client.get("/api/v1/openapi.json", validate=False).json()
        assert document["info"]["version"] == _contract_version()
        assert {"/", "/api/v1/health", "/api/v1/health/live", "/api/v1/health/ready"} <= document["paths"].keys()

    def test_swagger_ui_is_served(self, client):
        response = client.get("/api/v1/ui/", validate=False)
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/html")
        assert "swagger-ui" in response.text.lower()
        assert response.headers["x-request-id"]
