"""Reads and writes of `plans` and `subscriptions` (issue 17)."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from persistence.billing.models import Plan, Subscription
from persistence.database import for_update, insert_if_absent, savepoint


class PlanRepository:
    """The plan catalogue within the caller's unit of work."""

    def __init__(self, db: Session) -> None:
        self.db = db

    def get(self, code: str) -> Plan | None:
        """The plan with this code (active or not), else None."""
        return self.db.get(Plan, code)

    def listed(self) -> list[Plan]:
        """The active plans, cheapest tier first, monthly before yearly."""
        statement = select(Plan).where(Plan.active.is_(True)).order_by(Plan.tier, Plan.interval, Plan.code)
        return list(self.db.scalars(statement))

    def add(self, plan: Plan) -> None:
        """Stage a new plan and write it now."""
        self.db.add(plan)
        self.db.flush()

    def add_unless_taken(self, plan: Plan) -> bool:
        """Write a new plan now unless its code is taken (also by a concurrent writer, whose
        insert this waits for); False, and nothing written, when it is."""
        try:
            with savepoint(self.db):
                self.db.add(plan)
                self.db.flush()
        except IntegrityError:  # the savepoint's rollback made `plan` transient again
            return False
        return True


class SubscriptionRepository:
    """Subscriptions (one per account) within the caller's unit of work."""

    def __init__(self, db: Session) -> None:
        self.db = db

    def of_owner(self, owner_id: uuid.UUID, *, lock: bool = False) -> Subscription | None:
        """The account's subscription, or None if none was made yet; `lock`: held locked until
        the unit of work ends (PostgreSQL ``FOR UPDATE``; SQLite: the write lock)."""
        statement = select(Subscription).where(Subscription.owner_id == owner_id)
        if lock:
            statement = for_update(self.db, statement)
        return self.db.scalars(statement).one_or_none()

    def add(self, subscription: Subscription) -> None:
        """Stage a new subscription and write it now."""
        self.db.add(subscription)
        self.db.flush()

    def due_for_roll(self, now: datetime, *, limit: int) -> list[uuid.UUID]:
        """Owners of up to `limit` subscriptions (active or trialing) whose current period ended
        at or before `now`, the longest ended first (the period roll's batch)."""
        statement = (
            select(Subscription.owner_id)
            .where(Subscription.current_period_end <= now, Subscription.status.in_(("active", "trialing")))
            .order_by(Subscription.current_period_end, Subscription.id)
            .limit(limit)
        )
        return list(self.db.scalars(statement))

    def counts_by_plan_and_status(self) -> dict[tuple[str, str], int]:
        """How many subscriptions there are, by (plan code, status)."""
        statement = select(Subscription.plan_code, Subscription.status, func.count()).group_by(
            Subscription.plan_code, Subscription.status
        )
        return {(code, status): count for code, status, count in self.db.execute(statement)}

    def add_if_absent(self, values: dict[str, object]) -> None:
        """Write the subscription `values` (every column) unless the account already has one
        (``ON CONFLICT (owner_id) DO NOTHING``): two first reads of one account at once make one."""
        insert_if_absent(self.db, Subscription, values, key=["owner_id"])
