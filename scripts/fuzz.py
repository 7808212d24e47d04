"""`make fuzz`: run the schemathesis CLI against a real server that this script starts and stops.

It migrates a throw-away SQLite database, serves the API with uvicorn on a free loopback
port, registers a fuzz account, and runs ``schemathesis run --checks all`` with N examples
per operation (positive and negative data, every phase): first the stateful phase (calls
chained through the contract's OpenAPI links), then examples, coverage and fuzzing, then the
one operation that deletes the fuzz account. The fuzz account logs in through
the contract's own login operation (schemathesis dynamic auth, re-fetched after a 401 so a
fuzzed logout does not end the run), task paths use its own user id, and the documents
operations one chatbot of its own.
Exit status: schemathesis's (0 when no failure).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _post(url: str, body: dict, token: str | None = None, method: str = "POST") -> dict:
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})}
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method=method, headers=headers)
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def _patch(url: str, body: dict, token: str) -> dict:
    return _post(url, body, token, method="PATCH")


def _wait_until_up(url: str, server: subprocess.Popen, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"the server exited early with status {server.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"the server did not answer {url} within {seconds} s")


def _on_big_plan(database_url: str, user_id: str) -> None:
    """Put the fuzz account on the business plan, as a paid subscription would: on the free plan
    (2 chatbots, 2 API keys, 100 messages…) most creations would soon answer 402 and go no deeper."""
    from persistence.database import make_engine, make_session_factory
    from persistence.unit_of_work import UnitOfWork
    from services.clock import SystemClock
    from services.subscriptions import current_subscription

    engine = make_engine(database_url)
    try:
        with UnitOfWork(make_session_factory(engine)) as uow:
            owner_id = uuid.UUID(user_id)
            current_subscription(uow, owner_id=owner_id, clock=SystemClock(), lock=True).plan_code = "business_monthly"
    finally:
        engine.dispose()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=100, help="examples per operation (default 100)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument(
        "extra", nargs="*", help="more `schemathesis run` options, after `--` (e.g. -- --phases stateful)"
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="charter-fuzz-") as tmp:
        port = _free_port()
        base = f"http://127.0.0.1:{port}"
        env = {
            **os.environ,
            "ENV": "test",
            "DATABASE_URL": f"sqlite:///{tmp}/fuzz.db",
            "JWT_SECRET": secrets.token_urlsafe(48),
            "BCRYPT_ROUNDS": "4",  # the cost does not change behaviour; it keeps 100s of logins fast
            "VAR_DIR": tmp,
            "LOG_LEVEL": "WARNING",
            # The limits stay on (their headers are part of the contract) but far above the
            # fuzzer's pace, or most cases would only ever see 429.
            "RATE_LIMIT_PER_MINUTE": "1000000",
            "RATE_LIMIT_PER_HOUR": "10000000",
            "RATE_LIMIT_PROBES_PER_MINUTE": "1000000",
            "RATE_LIMIT_USER_PER_MINUTE": "1000000",
            "RATE_LIMIT_LOGIN": "1000000/minute",
            "RATE_LIMIT_LOGIN_ACCOUNT": "1000000/minute",
            "RATE_LIMIT_REGISTER": "1000000/minute",
            "RATE_LIMIT_REFRESH": "1000000/minute",
            "RATE_LIMIT_REFRESH_SESSION": "1000000/minute",
            "RATE_LIMIT_PASSWORD_RESET": "1000000/minute",
            "RATE_LIMIT_PASSWORD_RESET_ACCOUNT": "1000000/minute",
            "RATE_LIMIT_PASSWORD_CHANGE": "1000000/minute",
            "RATE_LIMIT_CONVERSATION_MESSAGE": "1000000/minute",
            "RATE_LIMIT_CHAT_COMPLETION": "1000000/minute",
            "RATE_LIMIT_KNOWLEDGE_SEARCH": "1000000/minute",
            # schemathesis also tries the login operation with the fuzz account's email and wrong
            # passwords; a lockout would end its identity mid-run.
            "LOGIN_MAX_FAILURES": "1000",
        }
        subprocess.run([str(BIN / "charter"), "migrate"], env=env, check=True, cwd=ROOT)
        server = subprocess.Popen([str(BIN / "charter"), "serve", "--port", str(port)], env=env, cwd=ROOT)
        try:
            _wait_until_up(f"{base}/api/v1/health", server)
            email, password = f"fuzz-{secrets.token_hex(4)}@example.com", secrets.token_urlsafe(16)
            user = _post(f"{base}/api/v1/auth/register", {"email": email, "password": password, "display_name": "Fuzz"})
            # An administrator, so the administrators' operations are fuzzed past their 403 too.
            subprocess.run(
                [str(BIN / "charter"), "create-admin", "--email", email, "--password-stdin"],
                input=password + "\n",
                text=True,
                env=env,
                cwd=ROOT,
                check=True,
                stdout=subprocess.DEVNULL,
            )
            _on_big_plan(env["DATABASE_URL"], user["id"])
            # A chatbot of the fuzz account, so the documents operations (paths under a chatbot)
            # are fuzzed past their 404: uploads with generated multipart bodies included.
            token = _post(f"{base}/api/v1/auth/login", {"email": email, "password": password})["access_token"]
            chatbot = _post(f"{base}/api/v1/chatbots", {"name": "Fuzz documents"}, token)
            # An active chatbot, so chat completions are fuzzed past their 404 and 409 (it knows
            # nothing: its answers are "don't know", blocking and streamed).
            chat = _post(f"{base}/api/v1/chatbots", {"name": "Fuzz chat"}, token)
            _patch(f"{base}/api/v1/chatbots/{chat['id']}", {"status": "active"}, token)
            config = Path(tmp) / "schemathesis.toml"
            config.write_text(
                (ROOT / "schemathesis.toml").read_text()
                + f"""
[auth.dynamic.openapi.bearerAuth]
path = "/api/v1/auth/login"
payload = {{ email = "{email}", password = "{password}" }}
extract_selector = "/access_token"
retry_on = [401]

[parameters]
"path.user_id" = "{user["id"]}"

[[operations]]
include-tag = "documents"
parameters = {{ "path.chatbot_id" = "{chatbot["id"]}" }}

[[operations]]
include-tag = "chat-completions"
parameters = {{ "path.chatbot_id" = "{chat["id"]}" }}
"""
            )
            command = [
                str(BIN / "schemathesis"),
                "--config-file",
                str(config),
                "run",
                f"{base}/api/v1/openapi.json",
                "--checks",
                "all",
                "--max-examples",
                str(args.examples),
                "--seed",
                str(args.seed),
                "--generation-database",
                "none",
                "--workers",
                "1",
            ]
            # The stateful phase runs first, on the fresh database: the later runs leave behind
            # Idempotency-Keys (which the fuzzer reuses with other bodies: 422) and thousands of tasks,
            # dead ends for its chains. Deleting one's own account ends the fuzzer's identity: that
            # operation runs last, alone, without links.
            last = "deleteOwnAccount"
            runs = [
                [*command, "--exclude-operation-id", last, "--phases", "stateful"],
                [*command, "--exclude-operation-id", last, "--phases", "examples,coverage,fuzzing"],
                [*command, "--include-operation-id", last, "--phases", "examples,coverage,fuzzing"],
            ]
            for run in (run + args.extra for run in runs):
                print("+", " ".join(run), flush=True)
                status = subprocess.run(run, cwd=tmp, check=False).returncode
                if status != 0:
                    return status
            return 0
        finally:
            server.terminate()
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.kill()


if __name__ == "__main__":
    raise SystemExit(main())
