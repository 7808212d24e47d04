"""The billing cycle (issue 17): `billing.cycle`, queued by every worker every
BILLING_CYCLE_INTERVAL_SECONDS (`server/worker.py`) unless one is queued or running: the period
roll (renewals, cancellations and downgrades at the period's end, trial ends) and the dunning
retries (`services.billing_cycle.run_cycle`)."""

from __future__ import annotations

from typing import Any

from services.billing_cycle import run_cycle
from services.billing_state import BillingConfig
from services.jobs import JobKind, JobRun, RetryPolicy

CYCLE_KIND = "billing.cycle"


def cycle(run: JobRun) -> dict[str, Any]:
    """One run of the billing cycle with the engine's billing configuration; the result counts
    the periods rolled and the invoices retried by outcome. Idempotent."""
    config = run.engine.context.get("billing")
    if not isinstance(config, BillingConfig):  # an engine wired without billing (some tests')
        return {"rolled": 0, "retried": {}, "errors": 0}
    report = run_cycle(unit_of_work=run.unit_of_work, config=config, clock=run.clock)
    return {"rolled": report.rolled, "retried": report.retried, "errors": len(report.errors)}


JOB_KINDS = [JobKind(CYCLE_KIND, cycle, RetryPolicy(max_attempts=3, base_delay_seconds=60, max_delay_seconds=900))]
