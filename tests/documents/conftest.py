"""A real clamd for the documents tests: started on 127.0.0.1 (a free TCP port and a unix socket in
a temporary folder) with a temporary configuration and a signature database made here for the
EICAR test file (Debian ships no database and freshclam cannot reach its mirrors offline), stopped
by its PID when the session ends. Skipped, saying why, only when clamd is not installed
(`.ci/run` installs Debian's clamav-daemon)."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from adapters.clamd import ClamdScanner
from tests.documents.samples import EICAR
from tests.processes import free_port, log_tail, stop_process

CLAMD_MARKER = b"CHARTER-CLAMD-ONLY-TEST-MARKER"
"""Bytes only the local clamd database knows (a body signature, ``Charter.Test.Marker``), so a test
can tell that clamd, not the built-in check, found something."""
CLAMD_MARKER_SIGNATURE = "Charter.Test.Marker"
CLAMD_SIGNATURE = "Eicar-Test-Signature"
"""The name the local database gives EICAR; clamd reports it with ``.UNOFFICIAL`` appended (a
signature outside ClamAV's official databases)."""


@dataclass(frozen=True)
class Clamd:
    tcp_url: str
    unix_url: str
    stream_max_bytes: int


@pytest.fixture(scope="session")
def clamd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Clamd]:
    executable = shutil.which("clamd") or next(
        (path for path in ("/usr/sbin/clamd", "/usr/local/sbin/clamd") if Path(path).is_file()), None
    )
    if executable is None:
        pytest.skip("clamd is not installed (Debian package clamav-daemon; .ci/run installs it)")
    folder = tmp_path_factory.mktemp("clamd")
    database = folder / "db"
    database.mkdir()
    # An MD5 signature (hash:size:name), what `sigtool --md5` writes, named as ClamAV names EICAR.
    (database / "local.hdb").write_text(f"{hashlib.md5(EICAR).hexdigest()}:{len(EICAR)}:{CLAMD_SIGNATURE}\n")  # noqa: S324
    # A body signature (name:target type:offset:hex), any file type, anywhere in the file.
    (database / "local.ndb").write_text(f"{CLAMD_MARKER_SIGNATURE}:0:*:{CLAMD_MARKER.hex()}\n")
    port = free_port()
    socket_path = folder / "clamd.sock"
    stream_max_bytes = 1024 * 1024
    config = folder / "clamd.conf"
    config.write_text(
        "\n".join(
            [
                "Foreground yes",
                f"TCPSocket {port}",
                "TCPAddr 127.0.0.1",
                f"LocalSocket {socket_path}",
                f"DatabaseDirectory {database}",
                f"TemporaryDirectory {folder}",
                f"LogFile {folder / 'clamd.log'}",
                f"StreamMaxLength {stream_max_bytes}",
                "SelfCheck 0",
                "",
            ]
        )
    )
    output = folder / "clamd.out"
    with output.open("wb") as out:
        process = subprocess.Popen([executable, "-c", str(config)], stdout=out, stderr=subprocess.STDOUT)
    try:
        scanner = ClamdScanner(f"tcp://127.0.0.1:{port}", timeout_seconds=2)
        deadline = time.monotonic() + 60
        while True:
            try:
                if scanner.ping() and socket_path.exists():
                    break
            except OSError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"clamd did not come up:\n{log_tail(output)}\n{log_tail(folder / 'clamd.log')}")
            time.sleep(0.2)
        yield Clamd(f"tcp://127.0.0.1:{port}", f"unix://{socket_path}", stream_max_bytes)
    finally:
        stop_process(process, timeout=10)
