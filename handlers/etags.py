"""Entity tags and conditional requests (RFC 9110 section 13) for versioned resources."""

from __future__ import annotations

import re

_STRONG_TAG = re.compile(r'^"(\d{1,10})"$')


def etag(version: int) -> str:
    """The strong entity tag of a version: ``"3"``."""
    return f'"{version}"'


def _tags(header: str) -> list[str]:
    return [part.strip() for part in header.split(",") if part.strip()]


def expected_versions(if_match: str | None) -> frozenset[int] | None:
    """The versions an `If-Match` allows, or None for no condition: without the header, or with
    ``*`` (any current representation; the task exists, or the answer is 404 anyway).

    If-Match compares strongly (RFC 9110 section 13.1.1): a weak tag ``W/"3"`` or anything
    that is not one of our tags matches no version, so the change is refused with 412.
    """
    if if_match is None:
        return None
    tags = _tags(if_match)
    if "*" in tags:
        return None
    versions = frozenset(int(m.group(1)) for tag in tags if (m := _STRONG_TAG.match(tag)))
    return versions or frozenset({-1})


def matches_current(if_none_match: str | None, version: int) -> bool:
    """Whether `If-None-Match` names the current version (weak comparison, RFC 9110 13.1.2)."""
    if if_none_match is None:
        return False
    current = etag(version)
    return any(tag == "*" or tag.removeprefix("W/") == current for tag in _tags(if_none_match))


def tag_matches(if_none_match: str | None, current: str) -> bool:
    """Whether `If-None-Match` names the entity tag `current` (any tag, not only a version's),
    or ``*`` (weak comparison, RFC 9110 13.1.2)."""
    if if_none_match is None:
        return False
    return any(tag == "*" or tag.removeprefix("W/") == current for tag in _tags(if_none_match))
