"""The answer to counting a request against a rate limit, as both limiters (the edge's and the
routes') send it: the RateLimit-* header fields (IETF draft "RateLimit header fields for HTTP")
and Retry-After."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Decision:
    """The outcome of counting one request: allowed or not, and the most constraining window."""

    allowed: bool
    limit: int
    remaining: int
    reset_seconds: int

    def headers(self) -> dict[str, str]:
        """The RateLimit-* headers (and Retry-After when refused)."""
        values = {
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Remaining": str(self.remaining),
            "RateLimit-Reset": str(self.reset_seconds),
        }
        if not self.allowed:
            values["Retry-After"] = str(max(self.reset_seconds, 1))
        return values
