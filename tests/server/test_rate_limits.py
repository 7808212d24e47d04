"""Rate limits: the edge limit every request counts against (per client address, probes on a
budget of their own, X-Forwarded-For believed only from trusted proxies), the route limits of
flask-limiter (login, register and refresh per client and per account; every authenticated
call per user), the RateLimit-* headers, turning limits off, and counters shared by two
processes through Redis, including Redis going away and coming back.

Each test builds apps of its own, so every test starts with fresh in-memory counters; every
answer of an operation in the contract, 429s included, is checked against the contract.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from starlette.testclient import TestClient

from server.app import create_app
from server.cli import migrate
from server.edge import rate_limit as rate_limits
from tests.helpers import (
    PASSWORD,
    TEST_SECRET,
    ContractClient,
    assert_problem,
    make_settings,
    register_and_login,
    registration,
    unique_email,
)
from tests.processes import charter_environment, log_tail, start_charter_serve, stop_process, wait_until_healthy
from tests.server.redis_server import REDIS_SERVER, RedisServer

PEER = "203.0.113.7"
OTHER_PEER = "198.51.100.9"
WINDOW_SECONDS = 60
RATE_LIMIT_HEADERS = ("ratelimit-limit", "ratelimit-remaining", "ratelimit-reset")
ROUTE_MAX_RESET = WINDOW_SECONDS  # a route limit's reset, like the edge's, never exceeds its window
PROBES = ("/api/v1/health", "/api/v1/health/live", "/api/v1/health/ready", "/metrics")
pytestmark = pytest.mark.usefixtures("restore_logging")  # create_app reconfigures the root logger
needs_redis = pytest.mark.skipif(REDIS_SERVER is None, reason="redis-server is not installed (apt-get install redis)")


# --- helpers ---------------------------------------------------------------------------------


def _app(database_url: str, var_dir: Path, **overrides: Any):
    return create_app(make_settings(database_url, var_dir, **overrides))


def _client(app: Any, openapi: Any, host: str = PEER) -> ContractClient:
    """A contract-checking client whose requests come from `host` (the ASGI peer address)."""
    return ContractClient(TestClient(app, client=(host, 5000), raise_server_exceptions=False), openapi)


def _peer(n: int) -> str:
    return f"192.0.2.{n}"


def _int_header(response: Any, name: str) -> int:
    value = response.headers.get(name)
    assert value is not None and value.isdigit(), f"{name}: {value!r} in {dict(response.headers)}"
    return int(value)


def _assert_limit_headers(
    response: Any, *, limit: int, remaining: int | None = None, max_reset: int = WINDOW_SECONDS
) -> None:
    """RateLimit-Limit/Remaining/Reset: integers, of the limit expected, reset within the window."""
    assert _int_header(response, "ratelimit-limit") == limit
    if remaining is not None:
        assert _int_header(response, "ratelimit-remaining") == remaining
    assert 0 <= _int_header(response, "ratelimit-reset") <= max_reset


def _assert_rate_limited(response: Any, *, limit: int, max_reset: int = WINDOW_SECONDS) -> dict[str, Any]:
    """A 429 problem with Retry-After and the RateLimit-* headers of the exhausted limit."""
    body = assert_problem(response, 429, "/problems/rate-limited")
    assert 1 <= _int_header(response, "retry-after") <= max_reset
    _assert_limit_headers(response, limit=limit, remaining=0, max_reset=max_reset)
    assert response.headers["x-request-id"]
    return body


def _no_limit_headers(response: Any) -> bool:
    return not any(name in response.headers for name in (*RATE_LIMIT_HEADERS, "retry-after"))


def _failed_login(client: ContractClient, email: str | None = None) -> Any:
    email = email or unique_email("nobody")
    return client.post("/api/v1/auth/login", json={"email": email, "password": "wrong password!"})


# --- the edge limit --------------------------------------------------------------------------


class TestEdgeLimit:
    def test_sixty_per_minute_then_429_per_client(self, database_url, tmp_path, openapi):
        app = _app(database_url, tmp_path, rate_limit_per_minute=60)
        client = _client(app, openapi)
        for expected_remaining in range(59, -1, -1):
            response = client.get("/")
            assert response.status_code == 200, response.text
            _assert_limit_headers(response, limit=60, remaining=expected_remaining)
        refused = client.get("/")
        body = _assert_rate_limited(refused, limit=60)
        assert body["instance"] == "/"
        assert refused.headers["content-type"].startswith("application/problem+json")
        # Still refused: a refused request does not open the window again.
        _assert_rate_limited(client.get("/"), limit=60)
        # The budget is the client's: another address is untouched.
        other = _client(app, openapi, OTHER_PEER).get("/")
        assert other.status_code == 200
        _assert_limit_headers(other, limit=60, remaining=59)

    def test_hourly_limit_is_enforced_and_reported_when_tighter(self, database_url, tmp_path, openapi):
        app = _app(database_url, tmp_path, rate_limit_per_minute=60, rate_limit_per_hour=3)
        client = _client(app, openapi)
        for expected_remaining in (2, 1, 0):
            response = client.get("/")
            assert response.status_code == 200
            assert _int_header(response, "ratelimit-limit") == 3
            assert _int_header(response, "ratelimit-remaining") == expected_remaining
        refused = client.get("/")
        assert_problem(refused, 429, "/problems/rate-limited")
        assert _int_header(refused, "ratelimit-limit") == 3
        assert _int_header(refused, "retry-after") >= 1

    def test_unknown_paths_count_too(self, database_url, tmp_path, openapi):
        app = _app(database_url, tmp_path, rate_limit_per_minute=3)
        client = _client(app, openapi)
        for _ in range(3):
            assert_problem(client.get("/no-such-path", validate=False), 404, "/problems/not-found")
        assert_problem(client.get("/no-such-path", validate=False), 429, "/problems/rate-limited")
        _assert_rate_limited(client.get("/"), limit=3)


class TestForwardedFor:
    def test_forged_header_from_an_untrusted_peer_is_ignored(self, database_url, tmp_path, openapi):
        app = _app(database_url, tmp_path, rate_limit_per_minute=60)
        client = _client(app, openapi)
        for n in range(60):
            response = client.get("/", headers={"X-Forwarded-For": f"10.0.{n}.1"})
            assert response.status_code == 200
            _assert_limit_headers(response, limit=60, remaining=59 - n)
        _assert_rate_limited(client.get("/", headers={"X-Forwarded-For": "10.99.99.99"}), limit=60)
        _assert_rate_limited(client.get("/", headers={"X-Forwarded-For": OTHER_PEER}), limit=60)

    @pytest.mark.parametrize("trusted", [PEER, "203.0.113.0/24"])
    def test_trusted_proxy_names_the_client(self, database_url, tmp_path, openapi, trusted):
        app = _app(database_url, tmp_path, rate_limit_per_minute=5, trusted_proxies=[trusted])
        proxy = _client(app, openapi)  # PEER, the trusted proxy
        first, second = "192.0.2.10", "192.0.2.20"
        for expected_remaining in range(4, -1, -1):
            response = proxy.get("/", headers={"X-Forwarded-For": first})
            assert response.status_code == 200
            _assert_limit_headers(response, limit=5, remaining=expected_remaining)
        _assert_rate_limited(proxy.get("/", headers={"X-Forwarded-For": first}), limit=5)
        # Another client behind the same proxy has a budget of its own.
        response = proxy.get("/", headers={"X-Forwarded-For": second})
        assert response.status_code == 200
        _assert_limit_headers(response, limit=5, remaining=4)
        # A value the client itself put in front of the proxy's does not change who it is:
        # the rightmost address the trusted proxy did not vouch for is the client.
        _assert_rate_limited(proxy.get("/", headers={"X-Forwarded-For": f"10.1.2.3, {first}"}), limit=5)
        # The proxy's own requests (no X-Forwarded-For) count against the proxy's address.
        own = proxy.get("/")
        assert own.status_code == 200
        _assert_limit_headers(own, limit=5, remaining=4)

    def test_forged_header_from_an_untrusted_peer_with_trusted_proxies_set(self, database_url, tmp_path, openapi):
        app = _app(database_url, tmp_path, rate_limit_per_minute=3, trusted_proxies=[PEER])
        proxy = _client(app, openapi)
        for _ in range(3):
            assert proxy.get("/", headers={"X-Forwarded-For": "192.0.2.10"}).status_code == 200
        _assert_rate_limited(proxy.get("/", headers={"X-Forwarded-For": "192.0.2.10"}), limit=3)
        stranger = _client(app, openapi, OTHER_PEER)  # not a trusted proxy
        # Naming the exhausted client does not make the stranger count as it ...
        response = stranger.get("/", headers={"X-Forwarded-For": "192.0.2.10"})
        assert response.status_code == 200
        _assert_limit_headers(response, limit=3, remaining=2)
        # ... and naming fresh clients does not give the stranger fresh budgets.
        assert stranger.get("/", headers={"X-Forwarded-For": "192.0.2.30"}).status_code == 200
        assert stranger.get("/", headers={"X-Forwarded-For": "192.0.2.31"}).status_code == 200
        _assert_rate_limited(stranger.get("/", headers={"X-Forwarded-For": "192.0.2.32"}), limit=3)


class TestRejectedRequestsCount:
    def test_bad_tokens_count_against_the_client(self, database_url, tmp_path, openapi):
        app = _app(database_url, tmp_path, rate_limit_per_minute=60)
        client = _client(app, openapi)
        statuses = []
        for n in range(100):
            response = client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer guess.{n}.x"})
            statuses.append(response.status_code)
            if n < 60:
                assert_problem(response, 401, "/problems/unauthorized")
                _assert_limit_headers(response, limit=60, remaining=59 - n)
            else:
                _assert_rate_limited(response, limit=60)
        assert statuses == [401] * 60 + [429] * 40

    def test_invalid_bodies_count_against_the_client(self, database_url, tmp_path, openapi):
        app = _app(database_url, tmp_path, rate_limit_per_minute=60)
        client = _client(app, openapi)
        statuses = []
        for n in range(100):
            response = client.post("/api/v1/auth/login", json={})
            statuses.append(response.status_code)
            if n < 60:
                assert_problem(response, 400, "/problems/validation-error")
            else:
                _assert_rate_limited(response, limit=60)
        assert statuses == [400] * 60 + [429] * 40


class TestProbeBudget:
    def test_probes_have_their_own_budget(self, database_url, tmp_path, openapi):
        app = _app(database_url, tmp_path, rate_limit_per_minute=3, rate_limit_probes_per_minute=8)
        client = _client(app, openapi)
        for _ in range(3):
            assert client.get("/").status_code == 200
        _assert_rate_limited(client.get("/"), limit=3)
        # The client budget is spent; probes still answer, on the probe budget.
        remaining = 8
        for _ in range(2):
            for path in PROBES:
                response = client.get(path)
                remaining -= 1
                assert response.status_code == 200, (path, response.text)
                _assert_limit_headers(response, limit=8, remaining=remaining)
        for path in PROBES:
            _assert_rate_limited(client.get(path), limit=8)
        _assert_rate_limited(client.get("/"), limit=3)

    def test_probes_do_not_consume_the_client_budget(self, database_url, tmp_path, openapi):
        app = _app(database_url, tmp_path, rate_limit_per_minute=3, rate_limit_probes_per_minute=100)
        client = _client(app, openapi)
        for _ in range(5):
            for path in PROBES:
                assert client.get(path).status_code == 200
        response = client.get("/")
        assert response.status_code == 200
        _assert_limit_headers(response, limit=3, remaining=2)

    def test_probe_prefix_does_not_cover_other_paths(self, database_url, tmp_path, openapi):
        """Only the probes are on the probe budget: /api/v1/auth/me spends the client budget."""
        app = _app(database_url, tmp_path, rate_limit_per_minute=2, rate_limit_probes_per_minute=100)
        client = _client(app, openapi)
        assert_problem(client.get("/api/v1/auth/me"), 401)
        assert_problem(client.get("/api/v1/auth/me"), 401)
        _assert_rate_limited(client.get("/api/v1/auth/me"), limit=2)
        assert client.get("/api/v1/health").status_code == 200


# --- route limits (flask-limiter) ------------------------------------------------------------


class TestRouteLimits:
    def test_login_per_client(self, database_url, tmp_path, openapi):
        app = _app(database_url, tmp_path, rate_limit_per_minute=60, rate_limit_login="3/minute")
        client = _client(app, openapi)
        for _ in range(3):
            assert_problem(_failed_login(client), 401, "/problems/invalid-credentials")
        body = _assert_rate_limited(_failed_login(client), limit=3, max_reset=ROUTE_MAX_RESET)
        assert body["instance"] == "/api/v1/auth/login"
        # Another address is not affected, and the refused client's other calls are fine.
        assert_problem(_failed_login(_client(app, openapi, OTHER_PEER)), 401, "/problems/invalid-credentials")
        assert client.get("/").status_code == 200

    def test_successful_login_carries_the_tighter_login_limit(self, database_url, tmp_path, openapi):
        app = _app(database_url, tmp_path, rate_limit_per_minute=60, rate_limit_login="3/minute")
        account = register_and_login(_client(app, openapi, _peer(1)))
        response = _client(app, openapi).post("/api/v1/auth/login", json={"email": account.email, "password": PASSWORD})
        assert response.status_code == 200
        _assert_limit_headers(response, limit=3, remaining=2, max_reset=ROUTE_MAX_RESET)

    def test_login_per_account_whatever_the_address(self, database_url, tmp_path, openapi):
        app = _app(database_url, tmp_path, rate_limit_per_minute=60, rate_limit_login_account="2/minute")
        account = register_and_login(_client(app, openapi, _peer(1)))  # one login: 1 of 2 spent
        assert_problem(_failed_login(_client(app, openapi, _peer(2)), account.email), 401)
        refused = _failed_login(_client(app, openapi, _peer(3)), account.email.upper())  # same account
        _assert_rate_limited(refused, limit=2, max_reset=ROUTE_MAX_RESET)
        # Even the right password is refused now: the limit is the account's, not the guess's.
        right = _client(app, openapi, _peer(4)).post(
            "/api/v1/auth/login", json={"email": account.email, "password": PASSWORD}
        )
        _assert_rate_limited(right, limit=2, max_reset=ROUTE_MAX_RESET)
        # Another account, from an address that just got a 429, is fine.
        assert_problem(_failed_login(_client(app, openapi, _peer(3))), 401, "/problems/invalid-credentials")

    def test_register_per_client(self, database_url, tmp_path, openapi):
        app = _app(database_url, tmp_path, rate_limit_per_minute=60, rate_limit_register="2/minute")
        client = _client(app, openapi)

        def register(c: ContractClient) -> Any:
            return c.post("/api/v1/auth/register", json=registration(display_name="R"))

        first = register(client)
        assert first.status_code == 201
        _assert_limit_headers(first, limit=2, remaining=1, max_reset=ROUTE_MAX_RESET)
        assert register(client).status_code == 201
        _assert_rate_limited(register(client), limit=2, max_reset=ROUTE_MAX_RESET)
        assert register(_client(app, openapi, OTHER_PEER)).status_code == 201

    def test_refresh_per_token_whatever_the_address(self, database_url, tmp_path, openapi):
        app = _app(database_url, tmp_path, rate_limit_per_minute=60, rate_limit_refresh_session="2/minute")
        guessed = "A" * 43
        for n in (1, 2):
            response = _client(app, openapi, _peer(n)).post("/api/v1/auth/refresh", json={"refresh_token": guessed})
            assert_problem(response, 401, "/problems/unauthorized")
        refused = _client(app, openapi, _peer(3)).post("/api/v1/auth/refresh", json={"refresh_token": guessed})
        _assert_rate_limited(refused, limit=2, max_reset=ROUTE_MAX_RESET)
        # Another token (here a real one) from the same address is fine.
        account = register_and_login(_client(app, openapi, _peer(4)))
        response = _client(app, openapi, _peer(3)).post(
            "/api/v1/auth/refresh", json={"refresh_token": account.refresh_token}
        )
        assert response.status_code == 200

    @pytest.mark.parametrize(
        ("operation", "overrides"),
        [
            ("login", {"rate_limit_login": "1000/minute", "rate_limit_login_account": "3/minute"}),
            ("refreshTokens", {"rate_limit_refresh": "1000/minute", "rate_limit_refresh_session": "3/minute"}),
        ],
    )
    def test_headers_are_those_of_the_most_constraining_route_limit(
        self, database_url, tmp_path, openapi, operation, overrides
    ):
        app = _app(database_url, tmp_path, rate_limit_per_minute=60, **overrides)
        account = register_and_login(_client(app, openapi, _peer(1)))  # spends 1 login of the account
        client = _client(app, openapi)
        if operation == "login":
            response = client.post("/api/v1/auth/login", json={"email": account.email, "password": PASSWORD})
        else:
            response = client.post("/api/v1/auth/refresh", json={"refresh_token": account.refresh_token})
        assert response.status_code == 200
        remaining = 1 if operation == "login" else 2
        _assert_limit_headers(response, limit=3, remaining=remaining, max_reset=ROUTE_MAX_RESET)

    def test_refresh_per_client(self, database_url, tmp_path, openapi):
        app = _app(database_url, tmp_path, rate_limit_per_minute=60, rate_limit_refresh="2/minute")
        client = _client(app, openapi)
        for n in range(2):
            assert_problem(client.post("/api/v1/auth/refresh", json={"refresh_token": f"guess{n}" * 6}), 401)
        _assert_rate_limited(
            client.post("/api/v1/auth/refresh", json={"refresh_token": "guess9" * 6}),
            limit=2,
            max_reset=ROUTE_MAX_RESET,
        )
        other = _client(app, openapi, OTHER_PEER)
        assert_problem(other.post("/api/v1/auth/refresh", json={"refresh_token": "guess9" * 6}), 401)

    def test_per_user_whatever_the_address(self, database_url, tmp_path, openapi):
        app = _app(database_url, tmp_path, rate_limit_per_minute=60, rate_limit_user_per_minute=3)
        # Registering and logging in are not authenticated: they do not spend the user budget.
        account = register_and_login(_client(app, openapi, _peer(1)))
        other_account = register_and_login(_client(app, openapi, _peer(1)))
        for n, expected_remaining in zip((10, 11, 12), (2, 1, 0), strict=True):
            response = _client(app, openapi, _peer(n)).get("/api/v1/auth/me", headers=account.headers)
            assert response.status_code == 200, response.text
            # The user limit is tighter than the edge limit, so its headers are the ones sent.
            _assert_limit_headers(response, limit=3, remaining=expected_remaining, max_reset=ROUTE_MAX_RESET)
        refused = _client(app, openapi, _peer(13)).get("/api/v1/auth/me", headers=account.headers)
        body = _assert_rate_limited(refused, limit=3, max_reset=ROUTE_MAX_RESET)
        assert body["instance"] == "/api/v1/auth/me"
        # Another user, even from an address the first used, is fine.
        response = _client(app, openapi, _peer(12)).get("/api/v1/auth/me", headers=other_account.headers)
        assert response.status_code == 200
        _assert_limit_headers(response, limit=3, remaining=2, max_reset=ROUTE_MAX_RESET)
        # Unauthenticated calls from the refused user's address are not on the user budget.
        assert _client(app, openapi, _peer(13)).get("/").status_code == 200

    def test_per_user_budget_is_shared_by_every_operation(self, database_url, tmp_path, openapi):
        app = _app(database_url, tmp_path, rate_limit_per_minute=60, rate_limit_user_per_minute=3)
        account = register_and_login(_client(app, openapi, _peer(1)))
        client = _client(app, openapi)
        for _ in range(3):
            assert client.get("/api/v1/auth/me", headers=account.headers).status_code == 200
        _assert_rate_limited(client.get("/api/v1/auth/me", headers=account.headers), limit=3, max_reset=ROUTE_MAX_RESET)
        # "Authenticated requests per user per minute" (README): the user's budget is spent.
        _assert_rate_limited(
            client.get(account.tasks_path, headers=account.headers), limit=3, max_reset=ROUTE_MAX_RESET
        )

    def test_route_limit_reset_is_within_the_window(self, database_url, tmp_path, openapi):
        app = _app(database_url, tmp_path, rate_limit_per_minute=60, rate_limit_user_per_minute=4)
        account = register_and_login(_client(app, openapi, _peer(1)))
        client = _client(app, openapi)
        responses = [client.get("/api/v1/auth/me", headers=account.headers) for _ in range(5)]
        assert [r.status_code for r in responses] == [200] * 4 + [429]
        for response in responses:
            assert _int_header(response, "ratelimit-limit") == 4  # the user limit's headers
            assert _int_header(response, "ratelimit-reset") <= WINDOW_SECONDS
        assert _int_header(responses[-1], "retry-after") <= WINDOW_SECONDS


class TestDisabled:
    def test_no_429_and_no_headers(self, database_url, tmp_path, openapi):
        app = _app(
            database_url,
            tmp_path,
            rate_limit_enabled=False,
            rate_limit_per_minute=1,
            rate_limit_per_hour=1,
            rate_limit_probes_per_minute=1,
            rate_limit_user_per_minute=1,
            rate_limit_login="1/minute",
            rate_limit_login_account="1/minute",
            rate_limit_register="1/minute",
        )
        client = _client(app, openapi)
        account = register_and_login(client)
        responses = [client.get("/") for _ in range(5)]
        responses += [client.get(path) for path in PROBES for _ in range(2)]
        responses += [client.get("/api/v1/auth/me", headers=account.headers) for _ in range(3)]
        responses += [client.post("/api/v1/auth/login", json={"email": account.email, "password": PASSWORD})]
        responses += [_failed_login(client, account.email) for _ in range(3)]
        responses += [client.get("/api/v1/auth/me", headers={"Authorization": "Bearer bad"}) for _ in range(3)]
        assert [r.status_code for r in responses] == [200] * 17 + [401] * 6
        for response in responses:
            assert _no_limit_headers(response), dict(response.headers)


# --- Redis: counters shared by processes, and Redis going away ------------------------------


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    if REDIS_SERVER is None:
        pytest.skip("redis-server is not installed (apt-get install redis)")
    workdir = tmp_path / "redis"
    workdir.mkdir()
    server = RedisServer(workdir)
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Any]:
    """Start `charter serve` processes on loopback and wait until each is healthy; all of them
    are stopped at the end."""
    processes: list[subprocess.Popen] = []

    def start(environment: dict[str, str]) -> tuple[str, Path]:
        base_url, process, log_path = start_charter_serve(environment, workdir=tmp_path)
        processes.append(process)
        wait_until_healthy(base_url, process, log_path)
        return base_url, log_path

    try:
        yield start
    finally:
        for process in processes:
            stop_process(process)


@needs_redis
def test_limit_holds_across_two_processes_sharing_redis(redis_server, serve, tmp_path, openapi):
    database_url = f"sqlite:///{tmp_path / 'shared.db'}"
    migrate(database_url)
    environment = charter_environment(
        DATABASE_URL=database_url,
        JWT_SECRET=TEST_SECRET,
        ENV="test",
        REDIS_URL=redis_server.url,
        RATE_LIMIT_PER_MINUTE="10",
        BCRYPT_ROUNDS="4",
        VAR_DIR=str(tmp_path / "var"),
        LOG_LEVEL="WARNING",
    )
    servers = [serve(environment), serve(environment)]
    clients = [ContractClient(httpx.Client(base_url=base_url, timeout=5.0), openapi) for base_url, _ in servers]
    try:
        for client in clients:
            ready = client.get("/api/v1/health/ready")
            assert ready.status_code == 200
            assert ready.json()["checks"]["redis"] == "ok"
            assert ready.json()["status"] == "ready"
        for n in range(10):
            response = clients[n % 2].get("/")
            assert response.status_code == 200, (n, response.text)
            # One budget for both processes: the remaining count goes down across them.
            _assert_limit_headers(response, limit=10, remaining=9 - n)
        for client in clients:
            _assert_rate_limited(client.get("/"), limit=10)
        keys = redis.Redis.from_url(redis_server.url).keys("*charter-edge*")
        assert keys, "the edge counters are not in Redis"
    finally:
        for client in clients:
            client.client.close()
    for _, log_path in servers:
        assert "Traceback" not in log_tail(log_path, 400), log_tail(log_path)


@needs_redis
def test_redis_going_away_falls_back_to_memory_and_back(
    redis_server, database_url, tmp_path, openapi, capsys, monkeypatch
):
    monkeypatch.setattr(rate_limits, "REDIS_RETRY_SECONDS", 0.3)
    app = _app(
        database_url,
        tmp_path,
        redis_url=redis_server.url,
        rate_limit_per_minute=100,
        rate_limit_user_per_minute=100,
        log_level="INFO",
    )
    store = redis.Redis.from_url(redis_server.url, socket_timeout=1, socket_connect_timeout=1)
    with TestClient(app, client=(PEER, 5000), raise_server_exceptions=False) as test_client:
        client = ContractClient(test_client, openapi)
        account = register_and_login(client)
        for _ in range(3):
            response = client.get("/")
            assert response.status_code == 200
            _assert_limit_headers(response, limit=100)
        assert _int_header(response, "ratelimit-remaining") == 100 - 5  # register, login and three GET /
        assert store.keys("*charter-edge*"), "the edge counters are not in Redis"
        me = client.get("/api/v1/auth/me", headers=account.headers)
        assert me.status_code == 200
        assert store.keys("*charter-routes*"), "the per-user counters are not in Redis"
        ready = client.get("/api/v1/health/ready")
        assert ready.status_code == 200
        assert ready.json()["status"] == "ready"
        assert ready.json()["checks"] == {"database": "ok", "redis": "ok"}

        redis_server.stop()
        started = time.monotonic()
        for expected_remaining in range(99, 94, -1):
            response = client.get("/")
            assert response.status_code == 200, response.text
            # In-process counters, which start afresh.
            _assert_limit_headers(response, limit=100, remaining=expected_remaining)
        me = client.get("/api/v1/auth/me", headers=account.headers)
        assert me.status_code == 200, me.text
        _assert_limit_headers(me, limit=100, max_reset=ROUTE_MAX_RESET)
        ready = client.get("/api/v1/health/ready")
        assert ready.status_code == 200, ready.text
        assert ready.json()["status"] == "degraded"
        assert ready.json()["checks"] == {"database": "ok", "redis": "unavailable"}
        assert time.monotonic() - started < 10, "requests waited on the dead Redis"
        err = capsys.readouterr().err
        assert "rate_limit_storage_unavailable" in err
        assert err.count("rate_limit_storage_unavailable") == 1, "logged once, not on every request"

        redis_server.start()  # same port, empty
        deadline = time.monotonic() + 10
        while True:
            ready = client.get("/api/v1/health/ready")
            if ready.status_code == 200 and ready.json()["status"] == "ready":
                break
            assert time.monotonic() < deadline, f"readiness did not recover: {ready.text}"
            time.sleep(0.2)
        assert ready.json()["checks"] == {"database": "ok", "redis": "ok"}
        deadline = time.monotonic() + 10
        while not store.keys("*charter-edge*"):
            assert time.monotonic() < deadline, "the edge counters did not go back to Redis"
            assert client.get("/").status_code == 200
            time.sleep(0.2)
        assert "rate_limit_storage_recovered" in capsys.readouterr().err
    store.close()
