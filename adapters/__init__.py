"""Adapters: the outside world behind the services' ports (`typing.Protocol`s), each with an
in-memory fake for tests. Services depend on the Protocol; the wiring (`server.app`) chooses
the adapter. Today: mail (SMTP, a log-only mailer without SMTP_HOST, an in-memory fake)."""
