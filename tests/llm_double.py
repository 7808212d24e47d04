"""A fake OpenAI-compatible chat-completions server for tests: real HTTP on 127.0.0.1.

It answers ``POST /v1/chat/completions`` like OpenAI's servers do, blocking (a
``chat.completion``) or streamed (``data: {chat.completion.chunk}`` events in a chunked body,
the usage in a last chunk when ``stream_options.include_usage`` asks for it, then
``data: [DONE]``), and misbehaves on demand: an error status, a slow first token, a stream that
stalls mid-way, a connection dropped mid-stream.

Use it from any test::

    from tests.llm_double import FakeLLM, Script

    with FakeLLM() as llm:                      # serves on a free port until the block ends
        llm.script(Script.fail(503), Script.fail(429, retry_after=0))   # the next two requests
        client = OpenAIChatClient(base_url=llm.base_url, api_key=llm.api_key, model="fake-1")
        ...
        assert llm.request_count == 3           # every request it saw, in `llm.requests`

Each request takes the next scripted `Script`; when none is left it gets `llm.default` (a normal
answer). A normal answer's text is `Script.text` or, when that is None, a reply that cites every
passage the system message numbers (lines starting ``[n]``): ``Answer from the passages [1] and
[2].``; with no numbered passage, ``I do not know.``. Streamed text goes out in
`Script.chunk_chars`-character deltas (or exactly `Script.chunks`), so `[n]` markers fall across
deltas. `max_tokens` counts words: a longer reply is cut there with finish reason ``length``.

Every wait of the fake is bounded (`stall_seconds`, at most 30 s) and ends early when the block
ends (`release`). With `api_key` set, a request without ``Authorization: Bearer <api_key>`` gets
401, as OpenAI answers it.
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

from tests.helpers import serving_on_loopback

PASSAGE_LINE = re.compile(r"^\[(\d{1,4})\]", re.MULTILINE)


@dataclass(frozen=True)
class Script:
    """How the fake answers one request.

    Attributes:
        status: the HTTP status; not 200 answers an OpenAI error body with it.
        retry_after: a `Retry-After` header (seconds) on an error answer.
        text: the reply (None: the default, citing the passages' numbers).
        chunks: the exact streamed deltas (overrides `text` and `chunk_chars` when streaming).
        chunk_chars: the size of each streamed delta.
        finish_reason: the finish reason sent (unless `max_tokens` cuts the reply: ``length``).
        first_token_delay: seconds between the headers and the first chunk (a slow model).
        stall_after: stream this many content deltas, then send nothing for `stall_seconds`.
        drop_after: stream this many content deltas, then close the connection mid-body.
        stall_seconds: how long a stall lasts (ends early on `release`), then the stream goes on.
    """

    status: int = 200
    retry_after: float | None = None
    text: str | None = None
    chunks: tuple[str, ...] | None = None
    chunk_chars: int = 3
    finish_reason: str = "stop"
    first_token_delay: float = 0.0
    stall_after: int | None = None
    drop_after: int | None = None
    stall_seconds: float = 10.0

    @classmethod
    def fail(cls, status: int, *, retry_after: float | None = None) -> Script:
        """An error answer with `status` (and `Retry-After`)."""
        return cls(status=status, retry_after=retry_after)

    @classmethod
    def reply(cls, text: str | None = None, **options: Any) -> Script:
        """A normal answer (`text`, or the default citing the passages)."""
        return cls(text=text, **options)


@dataclass(frozen=True)
class Seen:
    """One request the fake received: its path, headers (lower-cased names) and JSON body."""

    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class FakeLLM:
    """The fake server (module docstring). Start it with ``with FakeLLM() as llm:``.

    Attributes:
        api_key: the key required of every request (None: any or none accepted).
        default: the answer once the scripted ones are used up.
        requests: every request seen, in order.
    """

    api_key: str | None = "sk-fake-test-key"
    default: Script = field(default_factory=Script)
    requests: list[Seen] = field(default_factory=list)
    port: int = 0
    _scripts: list[Script] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _released: threading.Event = field(default_factory=threading.Event)
    _serving: Any = None

    @property
    def base_url(self) -> str:
        """What to give an OpenAI client as `base_url` (it appends ``/chat/completions``)."""
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def request_count(self) -> int:
        """How many requests reached the fake so far."""
        with self._lock:
            return len(self.requests)

    def script(self, *scripts: Script) -> None:
        """Queue answers for the next requests, one each, after those already queued."""
        with self._lock:
            self._scripts.extend(scripts)

    def release(self) -> None:
        """End every stall and delay now (the block's end does it too)."""
        self._released.set()

    def __enter__(self) -> FakeLLM:
        self._serving = serving_on_loopback(_handler_for(self))
        self.port = self._serving.__enter__()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()
        self._serving.__exit__(*exc_info)

    def _take(self, seen: Seen) -> Script:
        with self._lock:
            self.requests.append(seen)
            return self._scripts.pop(0) if self._scripts else self.default

    def _wait(self, seconds: float) -> None:
        self._released.wait(min(max(seconds, 0.0), 30.0))


def default_reply(body: Any) -> str:
    """The fake's reply when its script gives no text: cites each numbered passage of the system messages."""
    messages = body.get("messages", []) if isinstance(body, dict) else []
    system = "\n".join(
        str(message.get("content", ""))
        for message in messages
        if isinstance(message, dict) and message.get("role") in {"system", "developer"}
    )
    numbers = list(dict.fromkeys(int(number) for number in PASSAGE_LINE.findall(system)))
    if not numbers:
        return "I do not know."
    cited = " and ".join(f"[{number}]" for number in numbers)
    return f"Answer from the passages {cited}."


def _words(text: str) -> int:
    return len(text.split())


def _handler_for(fake: FakeLLM) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            pass

        def handle(self) -> None:
            with contextlib.suppress(OSError):  # a client reset a kept-alive connection (timed out, closed a stream)
                super().handle()

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                body = json.loads(raw or b"null")
            except ValueError:
                body = None
            script = fake._take(Seen(self.path, {k.lower(): v for k, v in self.headers.items()}, body))
            with contextlib.suppress(OSError):  # the client went away (it timed out, or closed the stream)
                self._answer(script, body)

        def _answer(self, script: Script, body: Any) -> None:
            if self.path.rstrip("/") != "/v1/chat/completions":
                return self._error(404, "Unknown path", "invalid_request_error")
            if fake.api_key is not None and self.headers.get("Authorization") != f"Bearer {fake.api_key}":
                return self._error(401, "Incorrect API key provided.", "invalid_request_error")
            if not isinstance(body, dict) or not isinstance(body.get("messages"), list) or not body.get("model"):
                return self._error(400, "'model' and 'messages' are required.", "invalid_request_error")
            if script.status != 200:
                kind = "rate_limit_exceeded" if script.status == 429 else "server_error"
                return self._error(script.status, f"Scripted error {script.status}", kind, script.retry_after)
            if script.text is not None:
                text = script.text
            elif script.chunks is not None:
                text = "".join(script.chunks)
            else:
                text = default_reply(body)
            finish_reason = script.finish_reason
            max_tokens = body.get("max_tokens") or body.get("max_completion_tokens")
            if isinstance(max_tokens, int) and _words(text) > max_tokens:
                text = " ".join(text.split()[:max_tokens])
                finish_reason = "length"
            messages = [message for message in body["messages"] if isinstance(message, dict)]
            usage = {
                "prompt_tokens": sum(_words(str(message.get("content", ""))) for message in messages),
                "completion_tokens": _words(text),
            }
            usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
            base = {"id": f"chatcmpl-fake-{fake.request_count}", "created": int(time.time()), "model": body["model"]}
            if body.get("stream"):
                if script.chunks is not None and finish_reason != "length":
                    chunks = list(script.chunks)
                else:
                    chunks = [text[i : i + script.chunk_chars] for i in range(0, len(text), script.chunk_chars)]
                include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
                return self._stream(script, base, chunks, finish_reason, usage if include_usage else None)
            fake._wait(script.first_token_delay)
            completion = {
                **base,
                "object": "chat.completion",
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": text},
                        "finish_reason": finish_reason,
                        "logprobs": None,
                    }
                ],
                "usage": usage,
            }
            return self._json(200, completion)

        def _json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        def _error(self, status: int, message: str, kind: str, retry_after: float | None = None) -> None:
            headers = {"Retry-After": f"{retry_after:g}"} if retry_after is not None else {}
            self._json(status, {"error": {"message": message, "type": kind, "param": None, "code": kind}}, headers)

        def _stream(
            self, script: Script, base: dict[str, Any], chunks: list[str], finish_reason: str, usage: Any
        ) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self.wfile.flush()

            def event(payload: Any) -> None:
                data = f"data: {payload if isinstance(payload, str) else json.dumps(payload)}\n\n".encode()
                self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                self.wfile.flush()

            def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
                return {
                    **base,
                    "object": "chat.completion.chunk",
                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}],
                }

            fake._wait(script.first_token_delay)
            event(chunk({"role": "assistant", "content": ""}))
            for sent, piece in enumerate(chunks):
                if script.drop_after is not None and sent >= script.drop_after:
                    self.close_connection = True
                    self.connection.shutdown(2)  # mid-body: no terminating chunk
                    return
                if script.stall_after is not None and sent == script.stall_after:
                    fake._wait(script.stall_seconds)
                event(chunk({"content": piece}))
            event(chunk({}, finish_reason))
            if usage is not None:
                event({**base, "object": "chat.completion.chunk", "choices": [], "usage": usage})
            event("[DONE]")
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()

    return Handler
