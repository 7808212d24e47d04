"""Webhook deliveries (issue 14): `webhooks.deliver`, one job per delivery of an event to an
endpoint, queued by `services.webhooks.fan_out` and `redeliver`.

Backoff (`RetryPolicy`): 1 minute after the first failed attempt, doubling, capped at a day,
with equal jitter (up to half of each wait taken off); 15 attempts span about 2 to 4 days, so an
endpoint that keeps failing is disabled (after a day of failures) before its deliveries run out.
"""

from __future__ import annotations

import uuid
from typing import Any

from services import webhooks
from services.jobs import JobKind, JobRun, RetryPolicy

DELIVERY_RETRY = RetryPolicy(max_attempts=15, base_delay_seconds=60, max_delay_seconds=86400, jitter=0.5)


def deliver(run: JobRun) -> dict[str, Any]:
    """One attempt of the delivery named by the payload's `delivery_id`; a failed attempt raises
    `services.webhooks.DeliveryFailed` and the engine retries it. Idempotent: a delivered one is
    not sent again. The result: whether it was sent, and the receiver's status."""
    report = webhooks.deliver(
        unit_of_work=run.unit_of_work,
        clock=run.clock,
        config=webhooks.config_of(run.engine),
        delivery_id=uuid.UUID(str(run.payload["delivery_id"])),
        final_attempt=run.attempt >= run.engine.kinds[run.kind].retry.max_attempts,
    )
    return {"sent": report.sent, "status_code": report.status_code, "endpoint_disabled": report.endpoint_disabled}


JOB_KINDS = [JobKind(webhooks.DELIVER_KIND, deliver, DELIVERY_RETRY)]
