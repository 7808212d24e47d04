"""Passwords: the policy (length, zxcvbn, context words, no composition rules, 128 max) on
register, change and reset; changing with the current password; the reset flow through a real
SMTP server; and the bcrypt cost upgrade at login."""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, update

from persistence.accounts.models import PasswordResetToken
from tests.accounts.conftest import (
    MAIL_FROM,
    NO_ROUTE_LIMITS,
    OTHER_STRONG_PASSWORD,
    STRONG_PASSWORD,
    ask_reset_token,
    body_of,
    reset_token_from,
    stored_password_hash,
)
from tests.helpers import (
    PASSWORD,
    app_client,
    assert_problem,
    login,
    register,
    registration,
    session_factory,
    unique_email,
)

REGISTER = "/api/v1/auth/register"
CHANGE = "/api/v1/auth/password"
RESET = "/api/v1/auth/password-reset"
CONFIRM = "/api/v1/auth/password-reset/confirm"
ME = "/api/v1/auth/me"

TOO_SHORT = "Zq8#vLp2!mWx4r"  # 14 characters, otherwise very strong
SHORTEST = "Zq8#vLp2!mWx4rT"  # 15
COMMON = [("passwordpassword1", "Repeats"), ("password12345678", "common")]
WORDS = "lunar biscuit harbor violet kettle drizzle compass meadow saffron glacier pepper tundra whistle ember "
LONGEST = (WORDS * 2)[:128]


@pytest.fixture(scope="module")
def pw(database_url, tmp_path_factory, openapi, smtp_server):
    """An app whose reset mail goes to the local SMTP server, with no route limits in the way."""
    var_dir = tmp_path_factory.mktemp("passwords")
    with app_client(database_url, var_dir, openapi, **NO_ROUTE_LIMITS, **smtp_server.settings) as pair:
        yield pair


def _register(client, password: str, *, email: str | None = None, display_name: str = "Test User"):
    """Try to register with `password`; the raw answer (the policy may refuse it)."""
    body = registration(email or unique_email("policy"), password=password, display_name=display_name)
    return client.post(REGISTER, json=body)


def _weak(response, pointer: str) -> list[dict]:
    problem = assert_problem(response, 422, "/problems/weak-password")
    assert problem["errors"], problem
    assert all(error["pointer"] == pointer for error in problem["errors"]), problem
    assert all(error["message"] for error in problem["errors"])
    return problem["errors"]


def _login_status(client, email: str, password: str) -> int:
    return client.post("/api/v1/auth/login", json={"email": email, "password": password}).status_code


class TestPolicyOnRegister:
    def test_too_short_names_the_length(self, pw):
        _, client = pw
        errors = _weak(_register(client, TOO_SHORT), "/password")
        assert "15" in errors[0]["message"] and "characters" in errors[0]["message"]

    def test_minimum_length_is_enough(self, pw):
        _, client = pw
        assert _register(client, SHORTEST).status_code == 201

    def test_min_length_follows_the_setting(self, database_url, tmp_path, openapi):
        with app_client(database_url, tmp_path, openapi, **NO_ROUTE_LIMITS, password_min_length=20) as (_, client):
            errors = _weak(_register(client, "velvet cactus orbit"), "/password")  # 19 characters
            assert "20" in errors[0]["message"]

    @pytest.mark.parametrize(("password", "reason"), COMMON)
    def test_common_password_is_refused_with_zxcvbn_reason(self, pw, password, reason):
        _, client = pw
        errors = _weak(_register(client, password), "/password")
        messages = " ".join(error["message"] for error in errors)
        assert reason in messages
        assert "at least" not in messages  # long enough: only the guessability is wrong

    @pytest.mark.parametrize(
        "password",
        [
            "jonathansmithers",
            "jonathan.smithers2024",
            "jonathansmithers2024",
            "smithersjonathan2024",
            "jonathansmithers!!",
        ],
    )
    def test_password_made_of_email_and_name_is_refused(self, pw, password):
        _, client = pw
        email = f"jonathan.smithers@{uuid.uuid4().hex[:10]}.example.com"
        response = _register(client, password, email=email, display_name="Jonathan Smithers")
        _weak(response, "/password")

    def test_same_words_are_fine_for_someone_else(self, pw):
        _, client = pw
        assert _register(client, "jonathan.smithers2024", display_name="Ada Lovelace").status_code == 201

    @pytest.mark.parametrize("password", ["velvet cactus orbit lantern", "marmalade quietly juggles thunder"])
    def test_lowercase_passphrase_without_digits_or_symbols_is_accepted(self, pw, password):
        _, client = pw
        email = unique_email("phrase")
        assert _register(client, password, email=email).status_code == 201
        assert _login_status(client, email, password) == 200

    def test_128_characters_accepted(self, pw):
        _, client = pw
        email = unique_email("longest")
        assert len(LONGEST) == 128
        assert _register(client, LONGEST, email=email).status_code == 201
        assert _login_status(client, email, LONGEST) == 200
        assert _login_status(client, email, LONGEST[:-1]) == 401

    def test_129_characters_break_the_contract(self, pw):
        _, client = pw
        problem = assert_problem(_register(client, LONGEST + "x"), 400, "/problems/validation-error")
        assert "/password" in [error["pointer"] for error in problem["errors"]]


def _account(client, password: str = PASSWORD, sessions: int = 1):
    email = unique_email("pw")
    user = register(client, email, password=password)
    return email, user["id"], [login(client, email, password) for _ in range(sessions)]


class TestChangePassword:
    def test_wrong_current_password_is_403_and_changes_nothing(self, pw):
        app, client = pw
        email, user_id, (current, other) = _account(client, sessions=2)
        before = stored_password_hash(app, user_id)
        response = client.post(
            CHANGE,
            headers=current.headers,
            json={"current_password": "not the password", "new_password": STRONG_PASSWORD},
        )
        assert_problem(response, 403, "/problems/wrong-password")
        assert stored_password_hash(app, user_id) == before
        assert _login_status(client, email, STRONG_PASSWORD) == 401
        assert _login_status(client, email, PASSWORD) == 200
        assert client.get(ME, headers=other.headers).status_code == 200

    def test_success_switches_password_and_ends_other_sessions(self, pw):
        _, client = pw
        email, _, (current, other, third) = _account(client, sessions=3)
        response = client.post(
            CHANGE, headers=current.headers, json={"current_password": PASSWORD, "new_password": STRONG_PASSWORD}
        )
        assert response.status_code == 204, response.text
        assert _login_status(client, email, PASSWORD) == 401
        assert _login_status(client, email, STRONG_PASSWORD) == 200
        assert client.get(ME, headers=current.headers).status_code == 200
        refreshed = client.post("/api/v1/auth/refresh", json={"refresh_token": current.refresh_token})
        assert refreshed.status_code == 200
        for ended in (other, third):
            assert_problem(client.get(ME, headers=ended.headers), 401, "/problems/unauthorized")
            assert_problem(client.post("/api/v1/auth/refresh", json={"refresh_token": ended.refresh_token}), 401)

    @pytest.mark.parametrize("new_password", [TOO_SHORT, COMMON[0][0]])
    def test_weak_new_password_is_422_on_new_password(self, pw, new_password):
        app, client = pw
        _email, user_id, (current, other) = _account(client, sessions=2)
        before = stored_password_hash(app, user_id)
        response = client.post(
            CHANGE, headers=current.headers, json={"current_password": PASSWORD, "new_password": new_password}
        )
        _weak(response, "/new_password")
        assert stored_password_hash(app, user_id) == before
        assert client.get(ME, headers=other.headers).status_code == 200  # nothing ended

    def test_new_password_from_own_name_is_refused(self, pw):
        _, client = pw
        email = f"jonathan.smithers@{uuid.uuid4().hex[:10]}.example.com"
        register(client, email, display_name="Jonathan Smithers")
        current = login(client, email)
        response = client.post(
            CHANGE, headers=current.headers, json={"current_password": PASSWORD, "new_password": "jonathansmithers"}
        )
        _weak(response, "/new_password")

    def test_needs_an_access_token(self, pw):
        _, client = pw
        response = client.post(CHANGE, json={"current_password": PASSWORD, "new_password": STRONG_PASSWORD})
        assert_problem(response, 401, "/problems/unauthorized")


class TestPasswordReset:
    def test_full_flow_through_smtp(self, pw, smtp_server):
        _app, client = pw
        email, _user_id, sessions = _account(client, sessions=2)

        response = client.post(RESET, json={"email": email})
        assert response.status_code == 202
        (message,) = smtp_server.mailbox.wait_for(email)
        assert message["To"] == email
        assert message["From"] == MAIL_FROM
        assert message["Subject"] == "Reset your Charter password"
        token = reset_token_from(message)
        assert f"https://app.example/reset?token={token}" in body_of(message)

        confirmed = client.post(CONFIRM, json={"token": token, "new_password": STRONG_PASSWORD})
        assert confirmed.status_code == 204, confirmed.text
        for session in sessions:
            assert_problem(client.get(ME, headers=session.headers), 401, "/problems/unauthorized")
            assert_problem(client.post("/api/v1/auth/refresh", json={"refresh_token": session.refresh_token}), 401)
        assert _login_status(client, email, PASSWORD) == 401
        assert _login_status(client, email, STRONG_PASSWORD) == 200

        again = client.post(CONFIRM, json={"token": token, "new_password": OTHER_STRONG_PASSWORD})
        assert_problem(again, 422, "/problems/invalid-reset-token")
        assert _login_status(client, email, STRONG_PASSWORD) == 200

    def test_email_is_matched_case_insensitively(self, pw, smtp_server):
        _, client = pw
        email, _, _ = _account(client)
        assert client.post(RESET, json={"email": email.upper()}).status_code == 202
        (message,) = smtp_server.mailbox.wait_for(email)
        assert message["To"] == email

    def test_expired_token_is_refused(self, pw, smtp_server):
        app, client = pw
        email, user_id, _ = _account(client)
        token = ask_reset_token(client, smtp_server, email)
        with session_factory(app).begin() as db:
            db.execute(
                update(PasswordResetToken)
                .where(PasswordResetToken.user_id == uuid.UUID(user_id))
                .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
            )
        response = client.post(CONFIRM, json={"token": token, "new_password": STRONG_PASSWORD})
        assert_problem(response, 422, "/problems/invalid-reset-token")
        assert _login_status(client, email, PASSWORD) == 200

    def test_unknown_token_is_refused(self, pw):
        _, client = pw
        response = client.post(CONFIRM, json={"token": "A" * 43, "new_password": STRONG_PASSWORD})
        assert_problem(response, 422, "/problems/invalid-reset-token")

    def test_a_second_request_voids_the_first_link(self, pw, smtp_server):
        _, client = pw
        email, _, _ = _account(client)
        first = ask_reset_token(client, smtp_server, email)
        second = ask_reset_token(client, smtp_server, email)
        assert first != second
        assert_problem(
            client.post(CONFIRM, json={"token": first, "new_password": STRONG_PASSWORD}),
            422,
            "/problems/invalid-reset-token",
        )
        assert client.post(CONFIRM, json={"token": second, "new_password": STRONG_PASSWORD}).status_code == 204
        assert _login_status(client, email, STRONG_PASSWORD) == 200

    def test_weak_new_password_keeps_the_token(self, pw, smtp_server):
        _, client = pw
        email, _, _ = _account(client)
        token = ask_reset_token(client, smtp_server, email)
        for weak in (TOO_SHORT, COMMON[1][0]):
            _weak(client.post(CONFIRM, json={"token": token, "new_password": weak}), "/new_password")
        assert _login_status(client, email, PASSWORD) == 200
        assert client.post(CONFIRM, json={"token": token, "new_password": STRONG_PASSWORD}).status_code == 204

    def test_unknown_email_gets_the_same_answer_and_no_mail(self, pw, smtp_server):
        _, client = pw
        nobody = unique_email("nobody")
        email, _, _ = _account(client)
        for_nobody = client.post(RESET, json={"email": nobody})
        for_someone = client.post(RESET, json={"email": email})
        assert for_nobody.status_code == for_someone.status_code == 202
        assert for_nobody.content == for_someone.content
        # Mail is sent in order by one background worker: once the second mail is here, a mail
        # for the first request would have arrived before it.
        smtp_server.mailbox.wait_for(email)
        assert smtp_server.mailbox.to(nobody) == []

    def test_token_is_stored_only_as_a_hash(self, pw, smtp_server):
        app, client = pw
        email, user_id, _ = _account(client)
        token = ask_reset_token(client, smtp_server, email)
        with session_factory(app)() as db:
            rows = db.scalars(select(PasswordResetToken)).all()
            mine = [row for row in rows if row.user_id == uuid.UUID(user_id)]
            assert len(mine) == 1
            assert mine[0].token_hash == hashlib.sha256(token.encode()).hexdigest()
            for row in rows:
                values = [str(getattr(row, column.key)) for column in PasswordResetToken.__table__.columns]
                assert not any(token in value for value in values)


class TestHashUpgrade:
    def test_login_with_a_higher_cost_rehashes(self, pw, database_url, tmp_path, openapi):
        app, client = pw  # BCRYPT_ROUNDS=4
        email, user_id, _ = _account(client)
        assert stored_password_hash(app, user_id).startswith("$2b$04$")
        with app_client(database_url, tmp_path, openapi, **NO_ROUTE_LIMITS, bcrypt_rounds=5) as (_, stronger):
            login(stronger, email)
            upgraded = stored_password_hash(app, user_id)
            assert upgraded.startswith("$2b$05$")
            login(stronger, email)  # the same cost now: left as it is
            assert stored_password_hash(app, user_id) == upgraded
            assert _login_status(stronger, email, "not the password") == 401

    def test_login_with_the_same_cost_leaves_the_hash(self, pw):
        app, client = pw
        email, user_id, _ = _account(client)
        before = stored_password_hash(app, user_id)
        login(client, email)
        assert stored_password_hash(app, user_id) == before

    def test_failed_login_does_not_rehash(self, pw, database_url, tmp_path, openapi):
        app, client = pw
        email, user_id, _ = _account(client)
        before = stored_password_hash(app, user_id)
        with app_client(database_url, tmp_path, openapi, **NO_ROUTE_LIMITS, bcrypt_rounds=5) as (_, stronger):
            assert _login_status(stronger, email, "not the password") == 401
        assert stored_password_hash(app, user_id) == before
