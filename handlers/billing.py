"""Operations of the `billing` tag (issue 17): the plan catalogue, the caller's subscription and
invoices (with a printable receipt), and the administrators' plans and summary. Every operation
on a subscription or invoice works on the caller's own (another account's invoice is 404)."""

from __future__ import annotations

import hashlib
import uuid
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import flask
import orjson
from jinja2 import Environment, select_autoescape

from handlers.etags import etag, matches_current, tag_matches
from handlers.responses import json_answer, not_modified, timestamp
from server.integration.context import (
    billing_config,
    clock,
    header,
    job_engine,
    principal,
    request_meta,
    unit_of_work,
)
from server.integration.idempotency import idempotent
from services import billing_reports, caching, plans, subscriptions
from services import invoices as invoice_services
from services.billing_state import subscription_data
from services.timestamps import parse_instant

if TYPE_CHECKING:
    from persistence.billing.models import Plan, Subscription


def plan_representation(plan: Plan) -> dict[str, Any]:
    """The `Plan` schema."""
    return plans.plan_values(plan)


def invoice_representation(view: invoice_services.InvoiceView) -> dict[str, Any]:
    """The `Invoice` schema: the invoice with its lines."""
    invoice = view.invoice
    return {
        "id": str(invoice.id),
        "number": invoice.number,
        "status": invoice.status,
        "billing_reason": invoice.billing_reason,
        "currency": invoice.currency,
        "subtotal": invoice.subtotal,
        "total": invoice.total,
        "amount_due": invoice.amount_due,
        "amount_paid": invoice.amount_paid,
        "period_start": timestamp(invoice.period_start),
        "period_end": timestamp(invoice.period_end),
        "created_at": timestamp(invoice.created_at),
        "finalized_at": timestamp(invoice.finalized_at),
        "paid_at": timestamp(invoice.paid_at),
        "attempt_count": invoice.attempt_count,
        "next_payment_attempt_at": timestamp(invoice.next_payment_attempt_at),
        "last_payment_error": invoice.last_payment_error,
        "lines": [
            {
                "position": line.position,
                "kind": line.kind,
                "description": line.description,
                "plan_code": line.plan_code,
                "amount": line.amount,
                "period_start": timestamp(line.period_start),
                "period_end": timestamp(line.period_end),
            }
            for line in view.lines
        ],
    }


def _subscription_answer(subscription: Subscription, body: Any = None) -> tuple:
    return json_answer(
        body if body is not None else subscription_data(subscription), 200, {"ETag": etag(subscription.version)}
    )


def _export_subscription(user_id: uuid.UUID) -> list[dict[str, Any]]:
    return [
        subscription_data(item) for item in subscriptions.exported_subscription(uow=unit_of_work(), owner_id=user_id)
    ]


def _export_invoices(user_id: uuid.UUID) -> list[dict[str, Any]]:
    return [
        invoice_representation(view)
        for view in invoice_services.exported_invoices(uow=unit_of_work(), owner_id=user_id)
    ]


EXPORT_SECTIONS = {"subscription": _export_subscription, "invoices": _export_invoices}
"""The caller's subscription and invoices (with their lines) in their data export."""


CATALOGUE_MAX_AGE_SECONDS = 60
"""`Cache-Control: public, max-age` of the plan list: browsers and CDNs may keep it a minute."""


def list_plans() -> Any:
    """GET /api/v1/plans — the active plans (public), from the cache (`services.plans.catalogue`),
    with a strong ETag of the list and Cache-Control; 304 when If-None-Match names it."""
    items = plans.catalogue(uow=unit_of_work(), cache=caching.cache_of(job_engine()))
    body = {"items": items}
    tag = '"' + hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()[:32] + '"'
    headers = {"ETag": tag, "Cache-Control": f"public, max-age={CATALOGUE_MAX_AGE_SECONDS}"}
    if tag_matches(header("If-None-Match"), tag):
        return not_modified(headers)
    return json_answer(body, 200, headers)


def create_plan(body: dict[str, Any]) -> tuple:
    """POST /api/v1/plans — 201 with the plan (administrators)."""
    plan = plans.create_plan(
        uow=unit_of_work(),
        clock=clock(),
        actor_id=principal().id,
        values=body,
        meta=request_meta(),
        cache=caching.cache_of(job_engine()),
    )
    return json_answer(plan_representation(plan), 201)


def get_subscription() -> tuple | flask.Response:
    """GET /api/v1/billing/subscription — with its ETag; 304 for a current If-None-Match."""
    subscription = subscriptions.get_subscription(uow=unit_of_work(), owner_id=principal().id, clock=clock())
    if matches_current(header("If-None-Match"), subscription.version):
        return not_modified({"ETag": etag(subscription.version)})
    return _subscription_answer(subscription)


@idempotent
def change_subscription(body: dict[str, Any]) -> tuple:
    """POST /api/v1/billing/subscription — subscribe or change plan."""
    result = subscriptions.change_plan(
        uow=unit_of_work(),
        config=billing_config(),
        clock=clock(),
        owner_id=principal().id,
        plan_code=body["plan_code"],
        meta=request_meta(),
    )
    answer: dict[str, Any] = {"subscription": subscription_data(result.subscription)}
    if result.invoice is not None:
        answer["invoice"] = invoice_representation(
            invoice_services.get_invoice(uow=unit_of_work(), owner_id=principal().id, invoice_id=result.invoice.id)
        )
    return _subscription_answer(result.subscription, answer)


def cancel_subscription(body: dict[str, Any] | None = None) -> tuple:
    """POST /api/v1/billing/subscription/cancel — at the period's end unless `at_period_end` is false."""
    subscription = subscriptions.cancel(
        uow=unit_of_work(),
        config=billing_config(),
        clock=clock(),
        owner_id=principal().id,
        at_period_end=(body or {}).get("at_period_end", True),
        meta=request_meta(),
    )
    return _subscription_answer(subscription)


def resume_subscription() -> tuple:
    """POST /api/v1/billing/subscription/resume — undo a scheduled cancellation or downgrade."""
    subscription = subscriptions.resume(
        uow=unit_of_work(), config=billing_config(), clock=clock(), owner_id=principal().id, meta=request_meta()
    )
    return _subscription_answer(subscription)


def list_invoices(limit: int = 20, cursor: str | None = None) -> tuple:
    """GET /api/v1/billing/invoices — newest first."""
    uow = unit_of_work()
    owner_id = principal().id
    result = invoice_services.list_invoices(uow=uow, owner_id=owner_id, limit=limit, cursor=cursor)
    views = [invoice_services.InvoiceView(invoice=item, lines=uow.invoices.lines(item.id)) for item in result.items]
    return json_answer({"items": [invoice_representation(view) for view in views], "next_cursor": result.next_cursor})


def get_invoice(invoice_id: str) -> tuple:
    """GET /api/v1/billing/invoices/{invoice_id}."""
    view = invoice_services.get_invoice(uow=unit_of_work(), owner_id=principal().id, invoice_id=uuid.UUID(invoice_id))
    return json_answer(invoice_representation(view))


_TEMPLATES = Environment(autoescape=select_autoescape(default=True, default_for_string=True), auto_reload=False)
RECEIPT = _TEMPLATES.from_string(
    """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Receipt {{ invoice.number }}</title>
<style>
body { font-family: system-ui, sans-serif; max-width: 42rem; margin: 2rem auto; color: #111; }
table { width: 100%; border-collapse: collapse; }
td, th { padding: .35rem .5rem; border-bottom: 1px solid #ddd; text-align: left; }
td.amount, th.amount { text-align: right; font-variant-numeric: tabular-nums; }
@media print { body { margin: 0; } }
</style>
</head>
<body>
<h1>Receipt {{ invoice.number }}</h1>
<p>Status: {{ invoice.status }}{% if invoice.paid_at %}, paid {{ invoice.paid_at }}{% endif %}<br>
Period: {{ invoice.period_start }} &ndash; {{ invoice.period_end }}<br>
Billed to: {{ customer }}</p>
<table>
<thead><tr><th>Description</th><th>Period</th><th class="amount">Amount ({{ invoice.currency }})</th></tr></thead>
<tbody>
{% for line in invoice.lines %}<tr><td>{{ line.description }}</td>
<td>{{ line.period_start }} &ndash; {{ line.period_end }}</td><td class="amount">{{ money(line.amount) }}</td></tr>
{% endfor %}</tbody>
<tfoot>
<tr><th colspan="2">Total</th><td class="amount">{{ money(invoice.total) }}</td></tr>
<tr><th colspan="2">Amount paid</th><td class="amount">{{ money(invoice.amount_paid) }}</td></tr>
<tr><th colspan="2">Amount due</th><td class="amount">{{ money(invoice.amount_due) }}</td></tr>
</tfoot>
</table>
</body>
</html>
"""
)


def money(minor: int) -> str:
    """Minor units as a decimal with two places (``-14.50``); every currency in the catalogue has
    two (ISO 4217 exponent 2)."""
    sign = "-" if minor < 0 else ""
    whole, cents = divmod(abs(minor), 100)
    return f"{sign}{whole:,}.{cents:02d}"


def get_invoice_receipt(invoice_id: str) -> flask.Response:
    """GET /api/v1/billing/invoices/{invoice_id}/receipt — printable HTML, every value escaped."""
    caller = principal()
    view = invoice_services.get_invoice(uow=unit_of_work(), owner_id=caller.id, invoice_id=uuid.UUID(invoice_id))
    html = RECEIPT.render(
        invoice=invoice_representation(view), customer=f"{caller.display_name} <{caller.email}>", money=money
    )
    return flask.Response(html, 200, {"Content-Type": "text/html; charset=utf-8", "Cache-Control": "no-store"})


def get_billing_summary(since: str | None = None, until: str | None = None) -> tuple:
    """GET /api/v1/admin/billing/summary — administrators; the last 30 days unless told."""
    end = parse_instant(until, parameter="until") if until else clock().now()
    start = parse_instant(since, parameter="since") if since else end - timedelta(days=30)
    report = billing_reports.summary(uow=unit_of_work(), since=start, until=end)
    return json_answer(
        {
            "since": timestamp(report.since),
            "until": timestamp(report.until),
            "active_subscriptions": [
                {"plan_code": code, "count": count} for code, count in report.active_subscriptions.items()
            ],
            "mrr": [{"currency": currency, "amount": amount} for currency, amount in report.mrr.items()],
            "churn_rate": report.churn_rate,
            "cancellations": report.cancellations,
            "paying_at_start": report.paying_at_start,
            "failed_payments": report.failed_payments,
        }
    )
