"""Billing (issue 17): plans, subscriptions, invoices, payment methods, provider events and usage."""
