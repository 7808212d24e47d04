"""The request id: a client's well-formed `X-Request-ID` is kept, any other request gets a new
one; either way the answer carries it back (`server.edge.middleware`) and every log line and
problem body of the request names it (`server.integration.request_context`)."""

from __future__ import annotations

import random
import re
from collections.abc import Iterable

REQUEST_ID_HEADER = b"x-request-id"
_VALID_REQUEST_ID = re.compile(rb"^[A-Za-z0-9._:-]{1,128}$")
_random = random.Random()  # noqa: S311 - request ids are labels, not secrets; os.urandom per request costs more


def request_id_of(headers: Iterable[tuple[bytes, bytes]]) -> str:
    """The request's id: the first well-formed `X-Request-ID` header (1-128 of ``A-Za-z0-9._:-``,
    so nothing can be injected into a log line), else 32 new hexadecimal digits (128 random bits).

    Args:
        headers: the ASGI scope's raw headers, names in lower case (as ASGI servers give them).
    """
    for name, value in headers:
        if name == REQUEST_ID_HEADER and _VALID_REQUEST_ID.match(value):
            return value.decode("ascii")
    return f"{_random.getrandbits(128):032x}"
