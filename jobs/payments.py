"""The fake payment provider's events (issue 17): `payments.deliver_fake_event`, one job per
event the fake emitted after a charge, queued by `server.integration.payments.FakeEventRelay`.

The job signs the event's bytes as Stripe signs (``Stripe-Signature``, the fake's first secret)
and hands them to the same processing the webhook endpoint runs, signature check included
(`services.provider_events.deliver_fake_event`: the worker knows no URL of the API). Retried as
Stripe retries a delivery that failed (with backoff); a redelivered event is recognised by its id.
"""

from __future__ import annotations

from typing import Any

from services import provider_events
from services.jobs import JobKind, JobRun, RetryPolicy

DELIVERY_RETRY = RetryPolicy(max_attempts=8, base_delay_seconds=30, max_delay_seconds=3600, jitter=0.5)


def deliver_fake_event(run: JobRun) -> dict[str, Any]:
    """Deliver the event in the payload (`event`, a Stripe-shaped event object); the result says
    what became of it."""
    event = run.payload["event"]
    with run.unit_of_work() as uow:
        received = provider_events.deliver_fake_event(
            uow=uow, clock=run.clock, config=provider_events.config_of(run.engine), event=event
        )
    return {"event_id": received.event_id, "duplicate": received.duplicate, "outcome": received.outcome}


JOB_KINDS = [JobKind(provider_events.FAKE_EVENT_KIND, deliver_fake_event, DELIVERY_RETRY)]
