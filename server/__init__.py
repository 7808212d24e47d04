"""Wiring: the app factory, settings, middleware, security handlers, logging and the CLI."""
