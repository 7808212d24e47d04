"""Outbound webhooks (issue 14): endpoints and their deliveries."""
