"""Idempotency records: the first answer to a request sent with an Idempotency-Key."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from persistence.database import affected_rows
from persistence.idempotency.models import IdempotencyRecord


class IdempotencyClaimContended(RuntimeError):
    """A key claimed and released by other requests faster than a claim could settle."""


class IdempotencyClaims:
    """Claims and releases records, each in a transaction of its own (committed at once), so a
    concurrent request sees a claim while the first is still running. Completing a claim is
    the unit of work's (`IdempotencyRecords`), so the stored answer is committed together with
    the change it describes, or not at all."""

    def __init__(self, session_factory: sessionmaker[Session]) -> None:
        self.session_factory = session_factory

    CLAIM_ATTEMPTS = 3
    """A claim that loses to a concurrent one which is then released (its request failed) tries
    again; three attempts bound the loop whatever happens."""

    def claim(
        self, *, owner_id: uuid.UUID, key: str, fingerprint: str, now: datetime, expires_at: datetime
    ) -> IdempotencyRecord | None:
        """Mark the key as in progress and return None, or return the record already there.

        Of concurrent claims of one key exactly one inserts (the primary key decides); the
        others read its record. Raises IdempotencyClaimContended when, three times over, the
        key was taken and then released before its record could be read.
        """
        for _ in range(self.CLAIM_ATTEMPTS):
            with self.session_factory() as db:
                db.execute(
                    delete(IdempotencyRecord).where(
                        IdempotencyRecord.owner_id == owner_id,
                        IdempotencyRecord.key == key,
                        IdempotencyRecord.expires_at <= now,
                    )
                )
                db.add(
                    IdempotencyRecord(
                        owner_id=owner_id,
                        key=key,
                        fingerprint=fingerprint,
                        state="in_progress",
                        created_at=now,
                        expires_at=expires_at,
                    )
                )
                try:
                    db.commit()
                    return None
                except IntegrityError:
                    db.rollback()
                existing = db.scalars(
                    select(IdempotencyRecord).where(
                        IdempotencyRecord.owner_id == owner_id, IdempotencyRecord.key == key
                    )
                ).one_or_none()
                if existing is not None:
                    return existing
        raise IdempotencyClaimContended(key)

    def release(self, *, owner_id: uuid.UUID, key: str) -> None:
        """Forget an in-progress claim whose request failed, so a retry can run."""
        with self.session_factory() as db:
            db.execute(
                delete(IdempotencyRecord).where(
                    IdempotencyRecord.owner_id == owner_id,
                    IdempotencyRecord.key == key,
                    IdempotencyRecord.state == "in_progress",
                )
            )
            db.commit()


class IdempotencyRecords:
    """Stores the answer of a claimed key within the caller's unit of work."""

    def __init__(self, db: Session) -> None:
        self.db = db

    def complete(
        self, *, owner_id: uuid.UUID, key: str, status: int, headers: dict[str, str], body: str | None
    ) -> None:
        """Store the answer of the request that claimed (`owner_id`, `key`)."""
        self.db.execute(
            update(IdempotencyRecord)
            .where(IdempotencyRecord.owner_id == owner_id, IdempotencyRecord.key == key)
            .values(state="completed", response_status=status, response_headers=headers, response_body=body)
        )

    def purge_expired(self, now: datetime) -> int:
        """Delete every record whose key expired at `now` (a retry after that is a new request
        anyway: `IdempotencyClaims.claim` replaces an expired record); returns how many."""
        result = self.db.execute(delete(IdempotencyRecord).where(IdempotencyRecord.expires_at <= now))
        return affected_rows(result)
