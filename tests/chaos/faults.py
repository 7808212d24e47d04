"""A loopback port whose behaviour a test switches: refusing connections, accepting them and
never answering (a hung server), or forwarding them to a real local server. The fault suite
points an adapter (SMTP, the answer provider, clamd) at it, so the same configured address
fails and then recovers, without restarting anything of the app.

Everything listens on 127.0.0.1 only; every thread is a daemon and every wait is bounded.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Literal, TypeVar

from tests.processes import free_port

Mode = Literal["refuse", "hang", "forward"]
T = TypeVar("T")
HANG_LIMIT_SECONDS = 30.0


class FlakyPort:
    """127.0.0.1:`port`, refusing (nothing listens), hanging (accepts, never answers) or
    forwarding to 127.0.0.1:`target` both ways. `connections` counts the connections accepted."""

    def __init__(self) -> None:
        self.port = free_port()
        self.mode: Mode = "refuse"
        self.target: int | None = None
        self.connections = 0
        self._listener: socket.socket | None = None
        self._held: list[socket.socket] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()

    def refuse(self) -> None:
        """Stop listening: connections are refused (ECONNREFUSED)."""
        self._close_listener()
        self._release_held()
        self.mode = "refuse"

    def hang(self) -> None:
        """Accept connections and never answer (until `refuse`, `forward` or `close`)."""
        self.mode = "hang"
        self._listen()

    def forward(self, target: int) -> None:
        """Forward each connection to 127.0.0.1:`target`."""
        self._release_held()
        self.target = target
        self.mode = "forward"
        self._listen()

    def close(self) -> None:
        """Stop everything."""
        self._stop.set()
        self._close_listener()
        self._release_held()

    def _listen(self) -> None:
        if self._listener is not None:
            return
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        listener.settimeout(0.1)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True, name="flaky-accept").start()

    def _close_listener(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()

    def _release_held(self) -> None:
        with self._lock:
            held, self._held = self._held, []
        for sock in held:
            with contextlib.suppress(OSError):
                sock.close()

    def _accept(self, listener: socket.socket) -> None:
        while not self._stop.is_set() and self._listener is listener:
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            if self.mode == "forward" and self.target is not None:
                threading.Thread(target=self._pipe_both, args=(connection, self.target), daemon=True).start()
            else:
                with self._lock:
                    self._held.append(connection)  # hung: never read, never answered

    def _pipe_both(self, client: socket.socket, target: int) -> None:
        try:
            upstream = socket.create_connection(("127.0.0.1", target), timeout=5)
        except OSError:
            client.close()
            return
        for sock in (client, upstream):
            sock.settimeout(HANG_LIMIT_SECONDS)
        threading.Thread(target=_pipe, args=(client, upstream), daemon=True).start()
        threading.Thread(target=_pipe, args=(upstream, client), daemon=True).start()


def _pipe(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass
    finally:
        for sock in (source, sink):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                sock.close()


@contextlib.contextmanager
def flaky_port() -> Iterator[FlakyPort]:
    """A `FlakyPort`, closed when the block ends."""
    port = FlakyPort()
    try:
        yield port
    finally:
        port.close()


def wait_until(condition: Callable[[], T], what: str, *, timeout: float = 15.0, every: float = 0.05) -> T:
    """Poll `condition` until it returns something true (returned), at most `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout} s")
        time.sleep(every)
