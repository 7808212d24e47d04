"""A cheaper `connexion.utils.extract_content_type`, the same answers.

Connexion (3.x) reads a request's and an answer's Content-Type through this helper three times
per request (request validation, the response decorator, response validation), and the helper
builds a ``typing.Collection[Tuple[...]]`` alias on every call: about 3 % of a health check's CPU
(issue 13). `install` puts this version in its place; callers look it up as
``utils.extract_content_type`` at call time, so they get it. Private-ish API touched: the
module attribute ``connexion.utils.extract_content_type``;
`tests/server/test_validation.py` holds the two to the same answers.
"""

from __future__ import annotations

from collections.abc import Iterable

import connexion.utils

ORIGINAL = connexion.utils.extract_content_type
"""Connexion's own version, kept for the test that compares the two."""


def extract_content_type(headers: Iterable[tuple[bytes | str, bytes | str]] | dict[str, str]) -> str | None:
    """The Content-Type of ASGI header pairs (or a mapping), decoded as Latin-1; None if absent.
    The first one wins, the name compared case-insensitively."""
    pairs = headers.items() if isinstance(headers, dict) else headers  # as connexion: a dict, else pairs
    for key, value in pairs:
        name = key.decode("latin-1") if isinstance(key, bytes) else key
        if name.lower() == "content-type":
            return value.decode("latin-1") if isinstance(value, bytes) else value
    return None


def install() -> None:
    """Make connexion use `extract_content_type` (idempotent)."""
    connexion.utils.extract_content_type = extract_content_type
