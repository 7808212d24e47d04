"""ClamAV through clamd: the adapter of the `services.document_scan.VirusScanner` port, and a fake.

`ClamdScanner(url)` speaks clamd's INSTREAM protocol (clamd(8), "INSTREAM"): it connects to
``tcp://host:port`` or ``unix:///path/to/clamd.ctl``, sends ``zINSTREAM\\0``, then the bytes in
chunks each preceded by its length as a 4-byte big-endian unsigned integer, then a zero length,
and reads one answer ending in a NUL byte: ``stream: OK``, ``stream: <signature> FOUND``, or
``<reason> ERROR`` (e.g. ``INSTREAM size limit exceeded. ERROR`` past clamd's StreamMaxLength,
after which clamd closes the connection). The `clamd` and `pyclamd` packages on PyPI are
unmaintained (last releases 2014 and 2017), hence these few lines. Every socket operation has a
timeout; the connection is one per scan (clamd's IDSESSION is not needed at this volume).

Resilience (`adapters.resilience`, the ``clamd`` breaker):

* **Timeouts**: `timeout_seconds` for connecting and for each send and receive.
* **Retries**: only connecting, at most `connect_attempts` attempts, when refused or timed out
  (nothing was sent). A scan that fails midway is not repeated here: the document job is.
* **Breaker**: unreachable, timed out or closed without answering counts as a failure; any
  answer (clean, infected, or clamd's own ERROR) as a success. While open, `scan` raises
  `DependencyUnavailable` (a ConnectionError) without connecting.
* **Fallback**: the document is held: it stays ``scanning`` (never extracted, indexed or served)
  and its job is retried by the job engine (`services.documents.process_document` raises
  `ScannerUnavailable`); a document clamd cannot judge is ``unscannable`` and quarantined while
  DOCUMENT_BLOCK_UNSCANNABLE.
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass
from typing import BinaryIO
from urllib.parse import unquote, urlsplit

from adapters.resilience import Breaker

DEFAULT_CHUNK_BYTES = 64 * 1024
_MAX_ANSWER_BYTES = 64 * 1024


@dataclass(frozen=True)
class ClamdOutcome:
    """clamd's answer: `verdict` ``clean``, ``infected`` or ``unscannable``; `signature` for
    infected; `detail` (clamd's error text) for unscannable."""

    verdict: str
    signature: str | None = None
    detail: str | None = None


@dataclass(frozen=True)
class ClamdAddress:
    """Where clamd listens: a TCP `host` and `port`, or a unix socket `path`."""

    host: str | None = None
    port: int | None = None
    path: str | None = None


def parse_clamd_url(url: str) -> ClamdAddress:
    """Read CLAMD_URL: ``tcp://127.0.0.1:3310`` (port 3310 when omitted) or
    ``unix:///run/clamav/clamd.ctl``.

    Raises:
        ValueError: another scheme, or no host or path.
    """
    parts = urlsplit(url)
    if parts.scheme == "tcp":
        if not parts.hostname:
            raise ValueError("a tcp:// CLAMD_URL names a host, e.g. tcp://127.0.0.1:3310")
        return ClamdAddress(host=parts.hostname, port=parts.port or 3310)
    if parts.scheme == "unix":
        path = unquote(parts.netloc + parts.path)
        if not path:
            raise ValueError("a unix:// CLAMD_URL names a socket, e.g. unix:///run/clamav/clamd.ctl")
        return ClamdAddress(path=path)
    raise ValueError("CLAMD_URL is tcp://host:port or unix:///path")


def parse_answer(answer: str) -> ClamdOutcome:
    """clamd's answer to one INSTREAM scan as an outcome (``stream: OK``, ``stream: NAME FOUND``,
    ``… ERROR``; anything else is unscannable)."""
    text = answer.strip()
    if text.startswith("stream:"):
        text = text[len("stream:") :].strip()
    if text == "OK":
        return ClamdOutcome("clean")
    if text.endswith(" FOUND"):
        return ClamdOutcome("infected", signature=text[: -len(" FOUND")].strip())
    return ClamdOutcome("unscannable", detail=f"clamd: {text[:200]}" if text else "clamd gave no answer")


class ClamdScanner:
    """Scans bytes with clamd over its INSTREAM protocol.

    Args:
        url: CLAMD_URL (``tcp://host:port`` or ``unix:///path``).
        timeout_seconds: connect, send and receive timeout (each operation).
        chunk_bytes: bytes sent per INSTREAM chunk.
        connect_attempts: attempts at connecting (1: no retry).
        breaker: the process's ``clamd`` breaker (`adapters.resilience.join`); None: its own.
    """

    engine = "clamav"

    def __init__(
        self,
        url: str,
        *,
        timeout_seconds: float = 30.0,
        chunk_bytes: int = DEFAULT_CHUNK_BYTES,
        connect_attempts: int = 2,
        breaker: Breaker | None = None,
    ) -> None:
        self.address = parse_clamd_url(url)
        self.timeout_seconds = timeout_seconds
        self.chunk_bytes = chunk_bytes
        self.connect_attempts = connect_attempts
        self.breaker = breaker or Breaker("clamd")

    def _connect(self) -> socket.socket:
        """A connection to clamd through the breaker, retried when refused or timed out."""
        return self.breaker.call(
            self._open,
            counts=lambda error: isinstance(error, OSError),
            retry_on=lambda error: isinstance(error, ConnectionRefusedError | TimeoutError),
            attempts=self.connect_attempts,
            wait_initial=0.2,
            wait_max=1.0,
            success_counts=False,  # a connection is not an answer: `scan` and `_command` record it
        )

    def _open(self) -> socket.socket:
        if self.address.path is not None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(self.timeout_seconds)
            try:
                sock.connect(self.address.path)
            except BaseException:
                sock.close()
                raise
            return sock
        assert self.address.host is not None and self.address.port is not None
        return socket.create_connection((self.address.host, self.address.port), timeout=self.timeout_seconds)

    def _command(self, command: bytes) -> str:
        with self._connect() as sock:
            try:
                sock.sendall(b"z" + command + b"\0")
                answer = _read_answer(sock)
            except OSError as error:
                self.breaker.failed(error)
                raise
        self.breaker.succeeded()
        return answer

    def ping(self) -> bool:
        """Whether clamd answers PONG (readiness). Raises OSError when it cannot be reached."""
        return self._command(b"PING") == "PONG"

    def version(self) -> str:
        """clamd's version line (e.g. ``ClamAV 1.4.6/…``). Raises OSError when unreachable."""
        return self._command(b"VERSION")

    def scan(self, stream: BinaryIO) -> ClamdOutcome:
        """Scan the bytes read from `stream` (from its position to its end).

        Returns:
            clean, infected with clamd's signature name, or unscannable with clamd's error (e.g.
            its StreamMaxLength exceeded).

        Raises:
            adapters.resilience.DependencyUnavailable: the ``clamd`` breaker is open.
            OSError: clamd cannot be reached, times out, or closes without answering.
        """
        with self._connect() as sock:
            try:
                sock.sendall(b"zINSTREAM\0")
                try:
                    while chunk := stream.read(self.chunk_bytes):
                        sock.sendall(struct.pack(">I", len(chunk)) + chunk)
                    sock.sendall(struct.pack(">I", 0))
                except (BrokenPipeError, ConnectionResetError):
                    pass  # clamd stopped reading (its size limit): its answer says why
                answer = _read_answer(sock)
            except OSError as error:
                self.breaker.failed(error)
                raise
        self.breaker.succeeded()
        return parse_answer(answer)


def _read_answer(sock: socket.socket) -> str:
    """One NUL-terminated answer (bounded); ConnectionError when clamd closes without one."""
    received = bytearray()
    while b"\0" not in received and len(received) < _MAX_ANSWER_BYTES:
        try:
            data = sock.recv(4096)
        except ConnectionResetError:
            data = b""
        if not data:
            break
        received += data
    if not received:
        raise ConnectionError("clamd closed the connection without answering")
    return bytes(received).split(b"\0", 1)[0].decode("utf-8", "replace").strip()


class FakeVirusScanner:
    """A scanner for tests: answers `outcome` (clean by default), or raises `error`; `scanned`
    keeps the bytes of each scan."""

    engine = "clamav"

    def __init__(self, outcome: ClamdOutcome | None = None, *, error: OSError | None = None) -> None:
        self.outcome = outcome or ClamdOutcome("clean")
        self.error = error
        self.scanned: list[bytes] = []

    def scan(self, stream: BinaryIO) -> ClamdOutcome:
        """Record the bytes; answer the configured outcome or raise the configured error."""
        self.scanned.append(stream.read())
        if self.error is not None:
            raise self.error
        return self.outcome
