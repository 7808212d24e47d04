"""The plan catalogue (issue 17): `charter plans sync` upserts the catalogue of services/plans.py
(matching migration 0015's frozen copy), never deletes or deactivates other plans, and a second run
changes nothing; the settings that shape billing are read and checked."""

from __future__ import annotations

import dataclasses
import uuid

import pytest
from pydantic import ValidationError

from persistence.billing.models import Plan
from server.cli import main
from server.settings import Settings
from services import plans
from tests.helpers import T0


def test_the_catalogue_matches_the_migrations_frozen_copy(new_uow):
    with new_uow() as uow:
        for spec in plans.CATALOGUE:
            plan = uow.plans.get(spec.code)
            assert plan is not None
            assert (plan.name, plan.interval, plan.price, plan.currency, plan.tier, plan.quotas) == (
                spec.name,
                spec.interval,
                spec.price,
                spec.currency,
                spec.tier,
                spec.quotas,
            )


def test_sync_restores_changed_plans_keeps_others_and_is_idempotent(new_uow, clock):
    extra = f"t_{uuid.uuid4().hex[:10]}"
    with new_uow() as uow:
        uow.plans.get("pro_monthly").price = 1
        uow.plans.add(
            Plan(
                code=extra,
                name="Extra",
                interval="month",
                price=5,
                currency="EUR",
                tier=1,
                quotas={},
                active=False,
                created_at=T0,
            )
        )
    with new_uow() as uow:
        report = plans.sync_catalogue(uow=uow, clock=clock)
    assert report.updated == ["pro_monthly"] and report.created == []
    with new_uow() as uow:
        again = plans.sync_catalogue(uow=uow, clock=clock)
        assert uow.plans.get("pro_monthly").price == 2900
        assert uow.plans.get(extra).active is False and uow.plans.get(extra).price == 5
    assert again.created == again.updated == [] and len(again.unchanged) == len(plans.CATALOGUE)


def test_sync_creates_a_missing_plan(new_uow, clock):
    code = f"t_{uuid.uuid4().hex[:10]}"
    spec = dataclasses.replace(plans.CATALOGUE[1], code=code, active=False)
    with new_uow() as uow:
        assert plans.sync_catalogue(uow=uow, clock=clock, catalogue=(spec,)).created == [code]
    with new_uow() as uow:
        assert uow.plans.get(code).price == 2900


def test_the_cli_syncs(settings, monkeypatch, capsys):
    monkeypatch.setenv("DATABASE_URL", settings.database_url)
    assert main(["plans", "sync"]) == 0
    assert "plans: created none" in capsys.readouterr().out


def test_billing_settings(monkeypatch):
    monkeypatch.setenv("DUNNING_RETRY_DAYS", "2, 4,7")
    monkeypatch.setenv("TRIAL_DAYS", "0")
    settings = Settings(_env_file=None)
    assert settings.dunning_retry_days == [2, 4, 7] and settings.trial_days == 0
    assert settings.payment_provider == "fake"
    for bad in ("3,1", "0", "1,1"):
        monkeypatch.setenv("DUNNING_RETRY_DAYS", bad)
        with pytest.raises(ValidationError, match="DUNNING_RETRY_DAYS"):
            Settings(_env_file=None)
    monkeypatch.delenv("DUNNING_RETRY_DAYS")
    monkeypatch.setenv("PAYMENT_PROVIDER", "paypal")
    with pytest.raises(ValidationError, match="PAYMENT_PROVIDER"):
        Settings(_env_file=None)


def test_concurrent_creations_of_one_code_make_one_plan(new_uow, clock, admin):
    import threading

    from services.audit import RequestMeta

    code = f"t_{uuid.uuid4().hex[:10]}"
    values = {
        "code": code,
        "name": "Race",
        "interval": "month",
        "price": 100,
        "currency": "USD",
        "tier": 1,
        "quotas": dict.fromkeys(plans.METERS, 1),
        "active": False,
    }
    barrier = threading.Barrier(4)
    outcomes: list[str] = []

    def create() -> None:
        try:
            barrier.wait(timeout=10)
            with new_uow() as uow:
                plans.create_plan(uow=uow, clock=clock, actor_id=uuid.UUID(admin.id), values=values, meta=RequestMeta())
            outcomes.append("created")
        except plans.PlanExists:
            outcomes.append("exists")
        except BaseException as error:
            outcomes.append(repr(error))

    threads = [threading.Thread(target=create) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(outcomes) == ["created", "exists", "exists", "exists"]
