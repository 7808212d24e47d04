"""Housekeeping of the service's own data (issue 14's first job kind)."""

from __future__ import annotations

from persistence.unit_of_work import UnitOfWork
from services.clock import Clock


def purge_expired(*, uow: UnitOfWork, clock: Clock) -> dict[str, int]:
    """Delete what can no longer be used: idempotency records past their 24 h (a retry after
    that is a new request anyway) and password-reset tokens that expired or were used (a reset
    link works once, for PASSWORD_RESET_TTL_SECONDS). Returns how many of each went:
    ``{"idempotency_records": n, "password_reset_tokens": m}``."""
    now = clock.now()
    return {
        "idempotency_records": uow.idempotency.purge_expired(now),
        "password_reset_tokens": uow.resets.purge(now),
    }
