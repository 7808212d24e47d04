"""The plan catalogue (issue 17): the plans an account can subscribe to, listed publicly; the
catalogue the product ships (`CATALOGUE`, restored by `charter plans sync`), and the plans
administrators add.

`CATALOGUE` is the current catalogue; migration 0015 holds a frozen copy of it as it was when
the tables were made. `sync_catalogue` upserts it: it creates missing plans and rewrites the
catalogue's own plans to match, and it never deletes nor deactivates anything — a plan an
administrator added is not in the catalogue and stays as it is. To retire a catalogue plan, set
its ``active`` to False here (it then stays for the subscriptions on it and is offered to no
one new). A changed price reaches an existing subscriber at their next renewal.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from typing import Any

from persistence.billing.models import Plan
from persistence.unit_of_work import UnitOfWork
from services import audit, caching
from services.audit import RequestMeta
from services.clock import Clock
from services.errors import Conflict, InvalidInput

METERS = ("chatbots", "messages", "crawled_pages", "documents", "storage_bytes", "api_keys")
"""The meters a plan's quotas name (each maps to a limit, or None for no limit)."""
PERIODIC_METERS = frozenset({"messages", "crawled_pages"})
"""Meters counted per billing period (the others count what exists)."""
INTERVALS = ("month", "year")
CODE_PATTERN = re.compile(r"^[a-z][a-z0-9_]{1,39}$")
CURRENCY_PATTERN = re.compile(r"^[A-Z]{3}$")
MAX_PRICE = 100_000_000_00
"""The highest price a plan may have, in minor units (a hundred million in major units)."""

_MIB = 1024 * 1024
_MONTHLY: dict[str, dict[str, int]] = {
    "free": {
        "chatbots": 2,
        "messages": 100,
        "crawled_pages": 100,
        "documents": 10,
        "storage_bytes": 50 * _MIB,
        "api_keys": 2,
    },
    "pro": {
        "chatbots": 10,
        "messages": 5_000,
        "crawled_pages": 5_000,
        "documents": 500,
        "storage_bytes": 2_048 * _MIB,
        "api_keys": 10,
    },
    "business": {
        "chatbots": 50,
        "messages": 50_000,
        "crawled_pages": 50_000,
        "documents": 5_000,
        "storage_bytes": 20_480 * _MIB,
        "api_keys": 25,
    },
}


def _quotas(tier: str, months: int) -> dict[str, int | None]:
    return {meter: limit * months if meter in PERIODIC_METERS else limit for meter, limit in _MONTHLY[tier].items()}


@dataclass(frozen=True)
class PlanSpec:
    """A plan as the catalogue states it (the columns of `Plan` but `created_at`)."""

    code: str
    name: str
    interval: str
    price: int
    currency: str
    tier: int
    quotas: dict[str, int | None] = field(default_factory=dict)
    active: bool = True


CATALOGUE: tuple[PlanSpec, ...] = (
    PlanSpec("free", "Free", "month", 0, "USD", 0, _quotas("free", 1)),
    PlanSpec("pro_monthly", "Pro (monthly)", "month", 2_900, "USD", 1, _quotas("pro", 1)),
    PlanSpec("pro_yearly", "Pro (yearly)", "year", 29_000, "USD", 1, _quotas("pro", 12)),
    PlanSpec("business_monthly", "Business (monthly)", "month", 9_900, "USD", 2, _quotas("business", 1)),
    PlanSpec("business_yearly", "Business (yearly)", "year", 99_000, "USD", 2, _quotas("business", 12)),
)
"""The catalogue the product ships: free, pro and business, monthly and yearly, in US cents;
yearly plans cost ten months and allow twelve months' periodic usage per (yearly) period."""


class PlanExists(Conflict):
    """A plan with this code exists already (codes are never reused)."""


PLANS_CACHE = "plans"
"""The cache name of the plan catalogue (`catalogue`), key `CATALOGUE_KEY`."""
CATALOGUE_KEY = "active"
CATALOGUE_TTL_SECONDS = 300.0
"""How long the catalogue is reused (issue 18, "the plan catalogue" is read-mostly): forgotten at
once when an administrator adds a plan through the API; `charter plans sync`, another process,
is seen within this time."""


def plan_values(plan: Plan) -> dict[str, Any]:
    """The `Plan` schema's values (JSON: what the cache keeps and `GET /api/v1/plans` lists)."""
    return {
        "code": plan.code,
        "name": plan.name,
        "interval": plan.interval,
        "price": plan.price,
        "currency": plan.currency,
        "tier": plan.tier,
        "quotas": {meter: plan.quotas.get(meter) for meter in METERS},
        "active": plan.active,
    }


def catalogue(*, uow: UnitOfWork, cache: caching.Cache | None, ttl_seconds: float = CATALOGUE_TTL_SECONDS) -> list[Any]:
    """The active plans as `plan_values`, in `list_plans`' order, from the cache when there
    (computed once per `ttl_seconds` however many ask: `Cache.get_or_compute`); without a cache,
    read every time."""

    def read() -> list[Any]:
        return [plan_values(plan) for plan in list_plans(uow=uow)]

    if cache is None:
        return read()
    values: list[Any] = cache.get_or_compute(PLANS_CACHE, CATALOGUE_KEY, read, ttl_seconds=ttl_seconds)
    return values


def list_plans(*, uow: UnitOfWork) -> list[Plan]:
    """The active plans, cheapest tier first, monthly before yearly."""
    return uow.plans.listed()


@dataclass(frozen=True)
class SyncReport:
    """What `sync_catalogue` did, by plan code."""

    created: list[str]
    updated: list[str]
    unchanged: list[str]


def _columns(spec: PlanSpec) -> dict[str, Any]:
    return {
        "name": spec.name,
        "interval": spec.interval,
        "price": spec.price,
        "currency": spec.currency,
        "tier": spec.tier,
        "quotas": dict(spec.quotas),
        "active": spec.active,
    }


def sync_catalogue(
    *, uow: UnitOfWork, clock: Clock, catalogue: tuple[PlanSpec, ...] = CATALOGUE, meta: RequestMeta | None = None
) -> SyncReport:
    """Upsert `catalogue` (`CATALOGUE`): create the plans that are missing, rewrite those that
    differ; never delete or deactivate a plan that is not in it (see the module's docstring).
    Audited (``plans_synced``) when anything changed. Safe to run again: a second run changes
    nothing."""
    created: list[str] = []
    updated: list[str] = []
    unchanged: list[str] = []
    now = clock.now()
    for spec in catalogue:
        columns = _columns(spec)
        plan = uow.plans.get(spec.code)
        if plan is None:
            uow.plans.add(Plan(code=spec.code, created_at=now, **columns))
            created.append(spec.code)
        elif any(getattr(plan, name) != value for name, value in columns.items()):
            for name, value in columns.items():
                setattr(plan, name, value)
            uow.flush()
            updated.append(spec.code)
        else:
            unchanged.append(spec.code)
    if created or updated:
        audit.record(
            uow,
            audit.EventType.PLANS_SYNCED,
            meta=meta or RequestMeta(),
            now=now,
            details={"created": created, "updated": updated},
        )
    return SyncReport(created=created, updated=updated, unchanged=unchanged)


def validate_quotas(quotas: dict[str, Any], *, pointer: str = "/quotas") -> dict[str, int | None]:
    """`quotas` checked: exactly the known meters (`METERS`), each a whole number >= 0 or null.

    Raises:
        InvalidInput: a missing or unknown meter, or a limit that is not such a number.
    """
    missing = [meter for meter in METERS if meter not in quotas]
    unknown = sorted(set(quotas) - set(METERS))
    if unknown:
        raise InvalidInput(f"Unknown meter {unknown[0]!r}; the meters are {', '.join(METERS)}.", pointer=pointer)
    if missing:
        raise InvalidInput(f"Every meter needs a limit (or null): {missing[0]!r} is missing.", pointer=pointer)
    for meter, limit in quotas.items():
        if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 0):
            raise InvalidInput("A limit is a whole number >= 0, or null for none.", pointer=f"{pointer}/{meter}")
    return {meter: quotas[meter] for meter in METERS}


def create_plan(
    *,
    uow: UnitOfWork,
    clock: Clock,
    actor_id: uuid.UUID,
    values: dict[str, Any],
    meta: RequestMeta,
    cache: caching.Cache | None = None,
) -> Plan:
    """An administrator adds a plan (`values`: code, name, interval, price, currency, tier,
    quotas; active defaults to True). Audited (``plan_created``).

    Raises:
        InvalidInput: a code not matching ``^[a-z][a-z0-9_]{1,39}$``, an interval other than
            month/year, a negative price, a currency that is not three capital letters (ISO 4217),
            quotas not naming exactly the known meters.
        PlanExists: the code is taken (also by an inactive plan).
    """
    code = values["code"]
    if not CODE_PATTERN.match(code):
        raise InvalidInput("A plan code is 2 to 40 of a-z, 0-9 and _, starting with a letter.", pointer="/code")
    if values["interval"] not in INTERVALS:
        raise InvalidInput("interval is month or year.", pointer="/interval")
    price = values["price"]
    if not isinstance(price, int) or isinstance(price, bool) or not 0 <= price <= MAX_PRICE:
        raise InvalidInput("price is a whole number of minor units, >= 0.", pointer="/price")
    if not CURRENCY_PATTERN.match(values["currency"]):
        raise InvalidInput("currency is an ISO 4217 code: three capital letters.", pointer="/currency")
    quotas = validate_quotas(values["quotas"])
    if uow.plans.get(code) is not None:
        raise PlanExists(f"A plan with code {code!r} exists already; plan codes are never reused.")
    plan = Plan(
        code=code,
        name=values["name"],
        interval=values["interval"],
        price=price,
        currency=values["currency"],
        tier=values["tier"],
        quotas=quotas,
        active=values.get("active", True),
        created_at=clock.now(),
    )
    if not uow.plans.add_unless_taken(plan):  # taken meanwhile by a concurrent request
        raise PlanExists(f"A plan with code {code!r} exists already; plan codes are never reused.")
    audit.record(
        uow,
        audit.EventType.PLAN_CREATED,
        meta=meta,
        now=clock.now(),
        actor_id=actor_id,
        details={"code": code, "price": price, "currency": plan.currency, "interval": plan.interval},
    )
    caching.invalidate_after_commit(uow, cache, PLANS_CACHE, CATALOGUE_KEY)
    return plan
