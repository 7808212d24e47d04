"""Response compression (issue 18, "Compression"; `server/edge/compression.py`): a big list is
gzip when asked and decodes to the same JSON; small answers, clients refusing gzip, HEAD,
answers with an ETag (so If-None-Match → 304 and If-Match still work) and anything but text
are sent as they are; an event stream is never compressed nor held back, in process and over
a real served stream (with `Accept-Encoding: gzip`)."""

from __future__ import annotations

import asyncio
import gzip
import json
from typing import Any

import pytest
from starlette.types import Message, Receive, Scope, Send

from server.edge.compression import CompressionMiddleware, accepts_gzip
from tests.conversations.test_streamed_answers import STREAM, Talk, read_events, talk  # noqa: F401 - the fixture
from tests.helpers import ContractClient, create_task, register_and_login

GZIP = {"Accept-Encoding": "gzip"}
IDENTITY = {"Accept-Encoding": "identity"}


def raw(client: ContractClient, method: str, path: str, headers: dict[str, str]) -> tuple[Any, bytes]:
    """The answer and its body as sent on the wire (not decoded)."""
    with client.client.stream(method, path, headers=headers) as response:
        return response, b"".join(response.iter_raw())


@pytest.fixture
def big_list(client: ContractClient) -> tuple[Any, str]:
    """An account with enough tasks that its list is well over 1 KiB; (account, list path)."""
    account = register_and_login(client)
    for number in range(12):
        create_task(client, account, title=f"task {number} " + "with a long enough title " * 3)
    return account, f"{account.tasks_path}?limit=50"


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("gzip", True),
        ("gzip, deflate, br", True),
        ("deflate, GZIP;q=0.5", True),
        ("gzip;q=0", False),
        ("gzip;q=0.0, *", False),
        ("*", True),
        ("*;q=0", False),
        ("identity", False),
        ("br, zstd", False),
        ("x-gzip", True),
        ("gzip;q=abc", False),
        ("", False),
    ],
)
def test_accept_encoding_is_parsed(header: str, expected: bool) -> None:
    assert accepts_gzip(header) is expected


def test_a_big_list_is_gzip_when_asked_and_decodes_to_the_same_json(client: ContractClient, big_list) -> None:
    account, path = big_list
    plain, plain_body = raw(client, "GET", path, {**account.headers, **IDENTITY})
    assert plain.status_code == 200
    assert len(plain_body) >= 1024
    assert "content-encoding" not in plain.headers
    assert "Accept-Encoding" in plain.headers["vary"]  # another client would get it compressed

    packed, packed_body = raw(client, "GET", path, {**account.headers, **GZIP})
    assert packed.status_code == 200
    assert packed.headers["content-encoding"] == "gzip"
    assert "Accept-Encoding" in packed.headers["vary"]
    assert int(packed.headers["content-length"]) == len(packed_body) < len(plain_body) / 3
    assert packed.headers["content-type"] == plain.headers["content-type"]
    assert json.loads(gzip.decompress(packed_body)) == json.loads(plain_body)
    # The contract still holds for the decoded answer, with the edge's headers.
    client.check("GET", path, client.client.get(path, headers={**account.headers, **GZIP}))
    assert packed.headers["x-request-id"] and packed.headers["ratelimit-limit"]


def test_gzip_refused_with_q_0_is_not_sent(client: ContractClient, big_list) -> None:
    account, path = big_list
    response, _ = raw(client, "GET", path, {**account.headers, "Accept-Encoding": "gzip;q=0, identity"})
    assert response.status_code == 200
    assert "content-encoding" not in response.headers


def test_small_answers_are_not_compressed(client: ContractClient) -> None:
    response, body = raw(client, "GET", "/api/v1/health", GZIP)
    assert response.status_code == 200 and len(body) < 1024
    assert "content-encoding" not in response.headers
    problem, body = raw(client, "GET", "/api/v1/auth/me", GZIP)
    assert problem.status_code == 401 and "content-encoding" not in problem.headers


def test_head_has_no_body_and_says_it_varies(client: ContractClient, big_list) -> None:
    account, path = big_list
    response, body = raw(client, "HEAD", path, {**account.headers, **GZIP})
    assert response.status_code == 200
    assert body == b""
    assert "content-encoding" not in response.headers
    assert "Accept-Encoding" in response.headers["vary"]


def test_an_answer_with_an_etag_is_never_compressed_and_conditions_still_work(client: ContractClient) -> None:
    account = register_and_login(client)
    task = create_task(client, account, title="big", description="words " * 400)
    path = f"{account.tasks_path}/{task['id']}"
    response, body = raw(client, "GET", path, {**account.headers, **GZIP})
    assert response.status_code == 200 and len(body) >= 1024
    assert "content-encoding" not in response.headers
    etag = response.headers["etag"]
    assert etag == f'"{task["version"]}"'
    not_modified, body = raw(client, "GET", path, {**account.headers, **GZIP, "If-None-Match": etag})
    assert (not_modified.status_code, body, not_modified.headers["etag"]) == (304, b"", etag)
    assert "content-encoding" not in not_modified.headers
    changed = client.put(path, json={"title": "bigger"}, headers={**account.headers, **GZIP, "If-Match": etag})
    assert changed.status_code == 200, changed.text
    assert changed.headers["etag"] == f'"{task["version"] + 1}"'
    stale = client.put(path, json={"title": "stale"}, headers={**account.headers, **GZIP, "If-Match": etag})
    assert stale.status_code == 412


def test_the_contract_document_is_compressed(client: ContractClient) -> None:
    response, body = raw(client, "GET", "/api/v1/openapi.json", GZIP)
    assert response.headers["content-encoding"] == "gzip"
    _, plain_body = raw(client, "GET", "/api/v1/openapi.json", IDENTITY)
    assert json.loads(gzip.decompress(body)) == json.loads(plain_body)


# --- the middleware alone, on a little ASGI app -------------------------------------------


def _run(headers: list[tuple[bytes, bytes]], chunks: list[bytes], *, method: str = "GET", accept: str = "gzip"):
    """Run CompressionMiddleware over an app answering 200 with `headers` and `chunks`; the
    messages it sent, with for each body message the number of app chunks sent before it."""
    produced = 0
    sent: list[tuple[Message, int]] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        nonlocal produced
        await send({"type": "http.response.start", "status": 200, "headers": list(headers)})
        for index, chunk in enumerate(chunks):
            produced += 1
            await send({"type": "http.response.body", "body": chunk, "more_body": index < len(chunks) - 1})

    async def send(message: Message) -> None:
        sent.append((message, produced))

    async def receive() -> Message:
        return {"type": "http.request", "body": b""}

    scope = {"type": "http", "method": method, "path": "/", "headers": [(b"accept-encoding", accept.encode())]}
    asyncio.run(CompressionMiddleware(app)(scope, receive, send))
    return sent


def _header(message: Message, name: bytes) -> bytes | None:
    return dict(message["headers"]).get(name)


def test_an_event_stream_is_neither_compressed_nor_held_back() -> None:
    chunks = [b"event: delta\ndata: " + b'"x"' * 700 + b"\n\n" for _ in range(3)]
    sent = _run([(b"content-type", b"text/event-stream; charset=utf-8")], chunks)
    start, bodies = sent[0][0], sent[1:]
    assert _header(start, b"content-encoding") is None
    assert [message["body"] for message, _ in bodies] == chunks
    assert [produced for _, produced in bodies] == [1, 2, 3]  # each chunk out as soon as it was made


@pytest.mark.parametrize(
    "headers",
    [
        [(b"content-type", b"image/png")],
        [(b"content-type", b"application/pdf")],
        [(b"content-type", b"application/zip")],
        [(b"content-type", b"application/octet-stream")],
        [(b"content-type", b"application/json"), (b"etag", b'"3"')],
        [(b"content-type", b"application/json"), (b"cache-control", b"no-transform")],
        [(b"content-type", b"application/json"), (b"content-encoding", b"br")],
    ],
)
def test_what_may_not_be_compressed_passes_untouched(headers: list[tuple[bytes, bytes]]) -> None:
    body = b"[" + b'"compressible text",' * 200 + b'""]'
    sent = _run(headers, [body])
    start = sent[0][0]
    assert _header(start, b"content-encoding") == dict(headers).get(b"content-encoding")
    assert b"".join(message["body"] for message, _ in sent[1:]) == body


@pytest.mark.parametrize("media_type", [b"application/json", b"application/problem+json", b"application/vnd.x+json"])
def test_json_types_are_compressed(media_type: bytes) -> None:
    body = b"[" + b'"compressible text",' * 200 + b'""]'
    sent = _run([(b"content-type", media_type), (b"content-length", str(len(body)).encode())], [body])
    start = sent[0][0]
    assert _header(start, b"content-encoding") == b"gzip"
    assert _header(start, b"vary") == b"Accept-Encoding"
    assert gzip.decompress(b"".join(message["body"] for message, _ in sent[1:])) == body


def test_a_served_stream_asked_with_gzip_is_not_compressed(talk: Talk) -> None:  # noqa: F811 - the fixture
    original = talk.headers
    talk.headers = {**original, "Accept-Encoding": "gzip"}
    response, events = read_events(talk, "How long do refunds take?")
    assert response.status_code == 201
    assert response.headers["content-type"].startswith("text/event-stream")
    assert "content-encoding" not in response.headers
    assert [name for name, _ in events][-1] == "message_end"
    assert STREAM["Accept"] == "text/event-stream"
