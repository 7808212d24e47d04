"""Register, login, refresh-token rotation, logout and me, with the auth edge cases."""

from __future__ import annotations

import time
import uuid

import jwt
import pytest

from tests.helpers import PASSWORD, TEST_SECRET, assert_problem, bearer, register_and_login


def _claims(token: str) -> dict:
    return jwt.decode(token, TEST_SECRET, algorithms=["HS256"], audience="charter-api")


def _forge(claims: dict, *, key: str = TEST_SECRET, algorithm: str = "HS256", typ: str = "at+jwt") -> str:
    return jwt.encode(claims, key, algorithm=algorithm, headers={"typ": typ})


class TestRegister:
    def test_creates_account_and_hides_password(self, client):
        email = f"Mixed.Case-{uuid.uuid4().hex[:8]}@Example.COM"
        response = client.post(
            "/api/v1/auth/register", json={"email": email, "password": PASSWORD, "display_name": "Ada"}
        )
        assert response.status_code == 201
        body = response.json()
        assert body["email"] == email.lower()
        assert body["display_name"] == "Ada"
        assert "password" not in body and "password_hash" not in body
        uuid.UUID(body["id"])

    def test_taken_email_is_409_whatever_the_case(self, client, account):
        response = client.post(
            "/api/v1/auth/register",
            json={"email": account.email.upper(), "password": PASSWORD, "display_name": "Again"},
        )
        assert_problem(response, 409, "/problems/email-taken")

    @pytest.mark.parametrize(
        ("body", "pointer"),
        [
            ({"password": PASSWORD, "display_name": "A"}, "/email"),
            ({"email": "a@example.com", "password": "short", "display_name": "A"}, "/password"),
            ({"email": "a@example.com", "password": PASSWORD, "display_name": "   "}, "/display_name"),
            ({"email": "a@example.com", "password": PASSWORD, "display_name": "A", "role": "admin"}, "/role"),
        ],
    )
    def test_invalid_body_names_the_field(self, client, body, pointer):
        problem = assert_problem(client.post("/api/v1/auth/register", json=body), 400, "/problems/validation-error")
        assert pointer in [error["pointer"] for error in problem["errors"]]

    def test_long_passphrase_beyond_bcrypt_72_bytes_works(self, client):
        passphrase = "ünïcödé passphrase " * 6  # > 72 bytes in UTF-8, bcrypt's own limit
        account = register_and_login(client, password=passphrase)
        wrong = client.post("/api/v1/auth/login", json={"email": account.email, "password": passphrase[:-1]})
        assert_problem(wrong, 401, "/problems/invalid-credentials")


class TestLogin:
    def test_token_pair_and_claims(self, client, account):
        response = client.post("/api/v1/auth/login", json={"email": account.email, "password": PASSWORD})
        assert response.status_code == 200
        assert response.headers["cache-control"] == "no-store"
        body = response.json()
        assert body["token_type"] == "Bearer"
        assert body["expires_in"] == 900
        claims = _claims(body["access_token"])
        assert claims["sub"] == account.id
        assert {"iss", "aud", "exp", "iat", "jti", "sid"} <= claims.keys()
        assert jwt.get_unverified_header(body["access_token"])["typ"] == "at+jwt"

    def test_unknown_email_and_wrong_password_answer_alike(self, client, account):
        wrong_password = client.post("/api/v1/auth/login", json={"email": account.email, "password": "nope-nope"})
        unknown_email = client.post(
            "/api/v1/auth/login", json={"email": "nobody-" + account.email, "password": PASSWORD}
        )
        first = assert_problem(wrong_password, 401, "/problems/invalid-credentials")
        second = assert_problem(unknown_email, 401, "/problems/invalid-credentials")
        assert first["detail"] == second["detail"]

    def test_each_login_is_a_new_session(self, client, account):
        again = client.post("/api/v1/auth/login", json={"email": account.email, "password": PASSWORD}).json()
        assert _claims(again["access_token"])["sid"] != _claims(account.access_token)["sid"]


class TestMe:
    def test_returns_caller(self, client, account):
        response = client.get("/api/v1/auth/me", headers=account.headers)
        assert response.status_code == 200
        assert response.json()["id"] == account.id

    def test_missing_token(self, client):
        response = client.get("/api/v1/auth/me")
        assert_problem(response, 401, "/problems/unauthorized")
        assert response.headers["www-authenticate"].startswith("Bearer")

    def test_expired_token(self, client, account):
        claims = _claims(account.access_token) | {"iat": int(time.time()) - 3600, "exp": int(time.time()) - 60}
        assert_problem(client.get("/api/v1/auth/me", headers=bearer(_forge(claims))), 401)

    def test_bad_signature(self, client, account):
        token = _forge(_claims(account.access_token), key="another-secret-that-is-also-32-bytes-long")
        assert_problem(client.get("/api/v1/auth/me", headers=bearer(token)), 401)

    def test_alg_none(self, client, account):
        token = jwt.encode(_claims(account.access_token), None, algorithm="none", headers={"typ": "at+jwt"})
        assert_problem(client.get("/api/v1/auth/me", headers=bearer(token)), 401)

    def test_wrong_audience(self, client, account):
        token = _forge(_claims(account.access_token) | {"aud": "someone-else"})
        assert_problem(client.get("/api/v1/auth/me", headers=bearer(token)), 401)

    def test_wrong_issuer(self, client, account):
        token = _forge(_claims(account.access_token) | {"iss": "evil"})
        assert_problem(client.get("/api/v1/auth/me", headers=bearer(token)), 401)

    def test_wrong_token_type(self, client, account):
        token = _forge(_claims(account.access_token), typ="JWT")
        assert_problem(client.get("/api/v1/auth/me", headers=bearer(token)), 401)

    def test_missing_session_claim(self, client, account):
        claims = _claims(account.access_token)
        del claims["sid"]
        assert_problem(client.get("/api/v1/auth/me", headers=bearer(_forge(claims))), 401)

    def test_valid_signature_but_unknown_session(self, client, account):
        token = _forge(_claims(account.access_token) | {"sid": str(uuid.uuid4())})
        assert_problem(client.get("/api/v1/auth/me", headers=bearer(token)), 401)

    def test_not_a_jwt(self, client):
        assert_problem(client.get("/api/v1/auth/me", headers={"Authorization": "Bearer not.a.jwt"}), 401)


class TestRefresh:
    def test_rotates_and_old_access_token_keeps_working(self, client, account):
        response = client.post("/api/v1/auth/refresh", json={"refresh_token": account.refresh_token})
        assert response.status_code == 200
        body = response.json()
        assert body["refresh_token"] != account.refresh_token
        assert _claims(body["access_token"])["sid"] == _claims(account.access_token)["sid"]
        assert client.get("/api/v1/auth/me", headers=bearer(body["access_token"])).status_code == 200
        # The new refresh token works in turn.
        assert client.post("/api/v1/auth/refresh", json={"refresh_token": body["refresh_token"]}).status_code == 200

    def test_reuse_revokes_the_whole_session(self, client, account):
        rotated = client.post("/api/v1/auth/refresh", json={"refresh_token": account.refresh_token}).json()
        replay = client.post("/api/v1/auth/refresh", json={"refresh_token": account.refresh_token})
        assert_problem(replay, 401, "/problems/refresh-token-reused")
        # Everything of the session is dead: the newest refresh token and both access tokens.
        assert_problem(client.post("/api/v1/auth/refresh", json={"refresh_token": rotated["refresh_token"]}), 401)
        assert_problem(client.get("/api/v1/auth/me", headers=bearer(rotated["access_token"])), 401)
        assert_problem(client.get("/api/v1/auth/me", headers=account.headers), 401)

    def test_reuse_does_not_touch_other_sessions(self, client, account):
        other = client.post("/api/v1/auth/login", json={"email": account.email, "password": PASSWORD}).json()
        client.post("/api/v1/auth/refresh", json={"refresh_token": account.refresh_token})
        client.post("/api/v1/auth/refresh", json={"refresh_token": account.refresh_token})
        assert client.get("/api/v1/auth/me", headers=bearer(other["access_token"])).status_code == 200

    def test_unknown_token(self, client):
        assert_problem(
            client.post("/api/v1/auth/refresh", json={"refresh_token": "A" * 43}), 401, "/problems/unauthorized"
        )


class TestLogout:
    def test_access_token_dies_at_once(self, client, account):
        assert client.post("/api/v1/auth/logout", headers=account.headers).status_code == 204
        assert_problem(client.get("/api/v1/auth/me", headers=account.headers), 401, "/problems/unauthorized")
        assert_problem(client.post("/api/v1/auth/refresh", json={"refresh_token": account.refresh_token}), 401)
        assert_problem(client.post("/api/v1/auth/logout", headers=account.headers), 401)

    def test_other_sessions_stay_open(self, client, account):
        other = client.post("/api/v1/auth/login", json={"email": account.email, "password": PASSWORD}).json()
        client.post("/api/v1/auth/logout", headers=account.headers)
        assert client.get("/api/v1/auth/me", headers=bearer(other["access_token"])).status_code == 200
