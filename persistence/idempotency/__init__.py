"""Idempotency records: the first answer to a request sent with an Idempotency-Key."""
