"""Typed settings, read once at start-up from the environment and an optional `.env` file.

Nothing else in the code base reads ``os.environ``: everything that can be configured is a
field here, and the README's configuration table lists each one with its default.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import os
import secrets
from functools import cached_property
from pathlib import Path
from typing import Annotated, Literal

import structlog
from limits import parse_many
from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

log = structlog.get_logger(__name__)

MIN_SECRET_BYTES = 32
"""HS256 keys must be at least as long as the hash output (RFC 7518 section 3.2): 256 bits."""


ANSWER_PROVIDERS = ("extractive", "openai")
"""The answer providers ANSWER_PROVIDER may name (server/worker.py builds each)."""


PAYMENT_PROVIDERS = ("fake", "stripe")
"""The payment providers PAYMENT_PROVIDER may name (server/integration/payments.py builds each)."""


class ConfigurationError(RuntimeError):
    """The settings cannot be used to start the service (e.g. production without a secret)."""


class Settings(BaseSettings):
    """Every configurable value of the service; field names are the upper-cased variables."""

    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    env: Literal["development", "test", "production"] = Field(
        "development", description="`production` refuses to start without JWT_SECRET."
    )
    database_url: str = Field(
        "sqlite:///var/charter.db",
        description="SQLAlchemy URL: sqlite:///path or postgresql+psycopg://user@host/db.",
    )
    db_pool_size: int = Field(
        10, ge=1, le=200, description="Connections kept open per process; unset: WSGI_THREADS (one per handler thread)."
    )
    db_max_overflow: int = Field(
        10, ge=0, le=200, description="Extra connections for short bursts (a request's second, brief connection)."
    )
    db_pool_timeout_seconds: float = Field(10.0, gt=0, le=300, description="Wait for a pooled connection.")
    db_pool_pre_ping: bool = Field(True, description="Test each pooled connection before use.")
    db_connect_timeout_seconds: int = Field(5, ge=1, le=120, description="PostgreSQL connect timeout.")
    wsgi_threads: int = Field(
        10, ge=1, le=200, description="Threads per process running the handlers (blocking database calls wait there)."
    )
    jwt_secret: SecretStr | None = Field(None, description="HS256 signing key, at least 32 bytes.")
    jwt_issuer: str = Field("charter", min_length=1, description="`iss` of access tokens.")
    jwt_audience: str = Field("charter-api", min_length=1, description="`aud` of access tokens.")
    access_token_ttl_seconds: int = Field(900, ge=30, le=86400, description="Access token lifetime.")
    refresh_token_ttl_seconds: int = Field(
        30 * 86400, ge=60, le=366 * 86400, description="Refresh token lifetime (idle session lifetime)."
    )
    bcrypt_rounds: int = Field(12, ge=4, le=31, description="bcrypt cost factor (log2 of iterations).")
    var_dir: Path = Field(Path("var"), description="Where local state lives (SQLite file, dev secret).")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", description="Log threshold.")
    log_format: Literal["console", "json"] = Field("console", description="Log line format.")
    db_statement_timeout_ms: int = Field(
        5000, ge=0, le=3_600_000, description="PostgreSQL statement_timeout per connection (0: none)."
    )
    max_body_bytes: int = Field(1_048_576, ge=1024, le=1_073_741_824, description="Largest request body.")
    sse_ping_seconds: float = Field(
        15.0, gt=0, le=3600, description="Silence on an event stream after which the bridge sends `: ping`."
    )
    sse_stream_threads: int = Field(
        100, ge=1, le=10_000, description="Threads per process pumping event streams (the most producing at once)."
    )
    sse_send_timeout_seconds: float = Field(
        30.0, gt=0, le=3600, description="How long an event stream waits for a client that reads nothing."
    )
    rate_limit_enabled: bool = Field(True, description="Enforce rate limits.")
    rate_limit_per_minute: int = Field(60, ge=1, le=1_000_000, description="Requests per client per minute.")
    rate_limit_per_hour: int = Field(1000, ge=1, le=10_000_000, description="Requests per client per hour.")
    rate_limit_user_per_minute: int = Field(
        120, ge=1, le=1_000_000, description="Authenticated requests per user per minute."
    )
    rate_limit_probes_per_minute: int = Field(
        600, ge=1, le=1_000_000, description="Health probes and metrics scrapes per client per minute."
    )
    rate_limit_login: str | None = Field(
        None, description="Logins per client; unset: the contract's x-rate-limits login."
    )
    rate_limit_login_account: str | None = Field(
        None, description="Logins per account (email); unset: the contract's x-rate-limits login_account."
    )
    rate_limit_register: str | None = Field(
        None, description="Registrations per client; unset: the contract's x-rate-limits register."
    )
    rate_limit_refresh: str | None = Field(
        None, description="Refreshes per client; unset: the contract's x-rate-limits refresh."
    )
    rate_limit_refresh_session: str | None = Field(
        None, description="Refreshes per refresh token; unset: the contract's x-rate-limits refresh_session."
    )
    rate_limit_conversation_message: str | None = Field(
        None, description="Messages per user; unset: the contract's x-rate-limits conversation_message."
    )
    rate_limit_chat_completion: str | None = Field(
        None, description="Chat completions per user; unset: the contract's x-rate-limits chat_completion."
    )
    rate_limit_knowledge_search: str | None = Field(
        None, description="Searches per user; unset: the contract's x-rate-limits knowledge_search."
    )
    redis_url: str | None = Field(None, description="Redis for rate-limit counters shared by processes.")
    trusted_proxies: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Proxies (IPs or CIDRs) whose X-Forwarded-For is believed."
    )
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Origins allowed to call the API from a browser."
    )
    metrics_enabled: bool = Field(True, description="Serve GET /metrics.")
    compression_enabled: bool = Field(
        True, description="gzip JSON and text answers of 1 KiB or more for clients that accept it."
    )
    login_max_failures: int = Field(5, ge=1, le=1000, description="Failed logins that lock an account.")
    login_failure_window_seconds: int = Field(900, ge=1, le=86400, description="Window the failures count in.")
    login_lockout_seconds: int = Field(900, ge=1, le=86400, description="How long a lockout lasts.")
    password_min_length: int = Field(15, ge=8, le=64, description="Shortest password accepted (NIST SP 800-63B).")
    password_min_strength: int = Field(3, ge=0, le=4, description="Lowest zxcvbn score accepted (0-4).")
    password_reset_ttl_seconds: int = Field(3600, ge=60, le=86400, description="Lifetime of a reset token.")
    password_reset_url: str = Field(
        "http://127.0.0.1:8000/reset-password?token={token}",
        description="Link mailed for a password reset; {token} is replaced by the token.",
    )
    rate_limit_password_reset: str | None = Field(
        None, description="Reset requests per client; unset: the contract's x-rate-limits password_reset."
    )
    rate_limit_password_reset_account: str | None = Field(
        None,
        description="Reset requests per account (email); unset: the contract's x-rate-limits password_reset_account.",
    )
    rate_limit_password_change: str | None = Field(
        None, description="Password changes per user; unset: the contract's x-rate-limits password_change."
    )
    smtp_host: str | None = Field(None, description="SMTP server for outgoing mail; unset: mail is logged, not sent.")
    smtp_port: int = Field(587, ge=1, le=65535, description="SMTP port.")
    smtp_security: Literal["starttls", "tls", "none"] = Field("starttls", description="SMTP transport security.")
    smtp_username: str | None = Field(None, description="SMTP login, if the server needs one.")
    smtp_password: SecretStr | None = Field(None, description="SMTP password.")
    smtp_timeout_seconds: float = Field(10.0, gt=0, le=120, description="SMTP connect and command timeout.")
    mail_from: str = Field("Charter <no-reply@charter.example>", description="Sender of outgoing mail.")
    job_queue: Literal["auto", "sqlite", "redis"] = Field(
        "auto", description="Job queue: auto (redis with REDIS_URL, else sqlite), sqlite or redis."
    )
    job_lease_seconds: int = Field(
        60, ge=1, le=3600, description="How long a claim or renewal holds a running job before the sweep re-queues it."
    )
    job_sweep_interval_seconds: float = Field(
        15.0, gt=0, le=3600, description="How often each worker sweeps for expired leases and lost deliveries."
    )
    reminder_sweep_interval_seconds: float = Field(
        2.0,
        gt=0,
        le=60,
        description="How often each worker fires due reminders whose scheduled job was lost (the backstop).",
    )
    job_extra_modules: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="More modules declaring JOB_KINDS, beyond the jobs package (tests)."
    )
    encryption_keys: SecretStr | None = Field(
        None,
        description="Comma-separated Fernet keys for secrets kept readable (webhook secrets); the first encrypts.",
    )
    webhook_allow_private_addresses: bool = Field(
        False, description="Let webhooks reach loopback, private and other non-public addresses (tests only)."
    )
    webhook_timeout_seconds: float = Field(
        10.0, gt=0, le=60, description="Connect, read and write timeout of one webhook delivery."
    )
    webhook_max_response_bytes: int = Field(
        65536, ge=0, le=1_048_576, description="Most bytes of a receiver's answer read (the rest is dropped)."
    )
    document_max_bytes: int = Field(
        20 * 1024 * 1024, ge=1024, le=1_073_741_824, description="Largest uploaded document, in bytes."
    )
    clamd_url: str | None = Field(
        None, description="clamd to scan documents with (tcp://host:port or unix:///path); unset: built-in scan only."
    )
    document_block_unscannable: bool = Field(
        True, description="Quarantine a document the scan cannot judge (unscannable)."
    )
    crawler_allow_private_addresses: bool = Field(
        False, description="Let the crawler reach loopback, private and other non-public addresses (tests only)."
    )
    crawler_info_url: str = Field(
        "https://charter.example/api/v1/docs#tag/websites",
        min_length=8,
        max_length=500,
        pattern=r"^https?://[^\s]+$",
        description="The page about our crawler named in its User-Agent, `CharterBot/<version> (+url)`.",
    )
    crawler_timeout_seconds: float = Field(
        10.0, gt=0, le=60, description="Connect, read and write timeout of one crawler request."
    )
    crawler_page_seconds: float = Field(
        30.0, gt=0, le=300, description="Most time one page may take to arrive, headers and body."
    )
    crawler_max_page_bytes: int = Field(
        2 * 1024 * 1024, ge=1024, le=50 * 1024 * 1024, description="An HTML page's size cap (decoded bytes)."
    )
    crawler_max_pdf_bytes: int = Field(
        20 * 1024 * 1024, ge=1024, le=200 * 1024 * 1024, description="A PDF's size cap (bytes)."
    )
    crawler_min_delay_seconds: float = Field(
        1.0, ge=0, le=60, description="The least wait between two requests to one host (a longer Crawl-delay wins)."
    )
    crawler_max_seconds: float = Field(
        3600.0,
        gt=0,
        le=86400,
        description="One crawl's time budget; past it the crawl ends `completed` with what it has.",
    )
    answer_provider: str = Field(
        "extractive",
        description=(
            "What composes chatbots' answers: `extractive` (no network, deterministic) or `openai` (the "
            "OpenAI-compatible server at LLM_BASE_URL, the extractive provider answering when it is down)."
        ),
    )
    llm_base_url: str | None = Field(
        None,
        pattern=r"^https?://[^\s]+$",
        max_length=500,
        description="API root of an OpenAI-compatible chat-completions server (…/v1); the openai answer provider.",
    )
    llm_api_key: SecretStr | None = Field(
        None, description="Bearer key for LLM_BASE_URL (servers needing none: unset)."
    )
    llm_model: str = Field("gpt-4o-mini", min_length=1, max_length=200, description="Model name sent to the server.")
    llm_connect_timeout_seconds: float = Field(5.0, gt=0, le=60, description="Connect timeout of the chat server.")
    llm_timeout_seconds: float = Field(
        30.0, gt=0, le=600, description="Longest wait for the answer's headers and for each next piece of a stream."
    )
    llm_max_seconds: float = Field(120.0, gt=0, le=1800, description="One answer's whole budget, retries included.")
    llm_max_tokens: int = Field(1024, ge=1, le=65536, description="max_tokens of an answer unless the caller says.")
    llm_retry_attempts: int = Field(3, ge=1, le=10, description="Attempts in all before the first token (1: none).")
    llm_retry_wait_seconds: float = Field(0.5, ge=0, le=60, description="First backoff; doubles, plus jitter.")
    llm_retry_max_wait_seconds: float = Field(
        5.0, ge=0, le=300, description="Longest backoff, and the cap on a server's Retry-After."
    )
    llm_breaker_failures: int = Field(5, ge=1, le=1000, description="Failures in a row that open the breaker.")
    llm_breaker_reset_seconds: float = Field(
        30.0, gt=0, le=3600, description="How long the open breaker fails fast before a trial call."
    )
    breaker_failures: int = Field(
        5,
        ge=1,
        le=1000,
        description="Failures in a row that open a dependency's breaker (SMTP, clamd, webhook, crawl).",
    )
    breaker_reset_seconds: float = Field(
        30.0, gt=0, le=3600, description="How long an open dependency breaker fails fast before a trial call."
    )
    otel_exporter_otlp_endpoint: str | None = Field(
        None,
        pattern=r"^https?://[^\s]+$",
        max_length=500,
        description="OTLP/HTTP collector base URL (spans go to <url>/v1/traces); unset or empty: no tracing at all.",
    )
    otel_service_name: str = Field(
        "charter", min_length=1, max_length=100, description="`service.name` of the exported spans."
    )
    stripe_api_key: SecretStr | None = Field(
        None, description="Stripe secret key (sk_…); needed by PAYMENT_PROVIDER=stripe."
    )
    stripe_webhook_secret: SecretStr | None = Field(
        None, description="Comma-separated Stripe webhook signing secrets (whsec_…) accepted; several while rotating."
    )
    stripe_api_base: str | None = Field(
        None,
        pattern=r"^https?://[^\s]+$",
        max_length=500,
        description="Stripe API root; unset: Stripe's own (https://api.stripe.com). Tests point it at a local double.",
    )
    stripe_connect_timeout_seconds: float = Field(5.0, gt=0, le=60, description="Connect timeout of Stripe calls.")
    stripe_timeout_seconds: float = Field(20.0, gt=0, le=120, description="Read timeout of each Stripe call.")
    stripe_retry_attempts: int = Field(
        3,
        ge=1,
        le=10,
        description="Attempts per Stripe call on timeouts, 429 and 5xx (1: none); idempotency keys make them safe.",
    )
    stripe_breaker_failures: int = Field(
        5, ge=1, le=1000, description="Failed Stripe calls in a row that open the breaker."
    )
    stripe_breaker_reset_seconds: float = Field(
        30.0, gt=0, le=3600, description="How long the open Stripe breaker fails fast before a trial call."
    )
    fake_webhook_secret: SecretStr | None = Field(
        None,
        description="Comma-separated secrets the fake provider's events are signed (first) and checked with; "
        "unset: one made under VAR_DIR.",
    )
    cache_key_prefix: str = Field(
        "charter-cache",
        min_length=1,
        max_length=100,
        pattern=r"^[A-Za-z0-9_.:-]+$",
        description="Start of every cache key (in Redis with REDIS_URL, else in process memory).",
    )
    cache_max_entries: int = Field(
        10_000, ge=1, le=10_000_000, description="Entries the in-process cache keeps at most (REDIS_URL unset)."
    )
    answer_cache_ttl_seconds: int = Field(
        3600, ge=0, le=30 * 86400, description="How long an answer to a first question is reused (0: never cached)."
    )
    public_chatbot_cache_ttl_seconds: int = Field(
        60,
        ge=0,
        le=86400,
        description="How long a public chatbot's settings are cached, and their Cache-Control max-age (0: no-cache).",
    )
    prometheus_multiproc_dir: Path | None = Field(
        None, description="Folder where each worker writes its metrics (set by `charter serve --workers N`)."
    )
    backup_dir: Path | None = Field(
        None,
        description="Where backups are written and listed (`charter backup`, scheduled ones); unset: VAR_DIR/backups.",
    )
    backup_keep: int = Field(
        7,
        ge=1,
        le=10_000,
        description="Archives a scheduled backup leaves in BACKUP_DIR (the newest); older ones are deleted.",
    )
    backup_schedule: str = Field(
        "",
        max_length=200,
        description="Cron expression (UTC, five fields) of scheduled backups, e.g. `0 3 * * *`; empty: none.",
    )

    @field_validator("otel_exporter_otlp_endpoint", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        """An empty OTEL_EXPORTER_OTLP_ENDPOINT (compose's `${OTEL_EXPORTER_OTLP_ENDPOINT:-}`) is unset."""
        return None if isinstance(value, str) and not value.strip() else value

    analytics_flush_seconds: float = Field(
        60.0,
        gt=0,
        le=3600,
        description="How often each API process adds its in-memory request counts to the analytics tables.",
    )
    analytics_rollup_interval_seconds: float = Field(
        3600.0, ge=60, le=86400, description="How often each worker queues the analytics rollup job."
    )
    analytics_retention_days: int = Field(
        400, ge=2, le=3660, description="Days of raw analytics counts and rollups kept (older ones are deleted)."
    )
    payment_provider: str = Field(
        "fake",
        description="The payment provider invoices are charged through: `fake` (in memory, no network, test "
        "tokens) or `stripe` (STRIPE_API_KEY).",
    )
    trial_days: int = Field(
        14, ge=0, le=365, description="Days of trial on an account's first paid subscription (0: no trial)."
    )
    dunning_retry_days: Annotated[list[int], NoDecode] = Field(
        default_factory=lambda: [1, 3, 5],
        description="Days after a renewal's first failed charge when it is retried (comma-separated, increasing).",
    )
    billing_cycle_interval_seconds: float = Field(
        300.0,
        gt=0,
        le=86400,
        description="How often each worker queues `billing.cycle` (period roll, renewals, dunning retries).",
    )

    @field_validator("payment_provider")
    @classmethod
    def _known_payment_provider(cls, value: str) -> str:
        if value not in PAYMENT_PROVIDERS:
            known = ", ".join(PAYMENT_PROVIDERS)
            raise ValueError(f"PAYMENT_PROVIDER {value!r} is not a payment provider; use one of: {known}")
        return value

    @field_validator("dunning_retry_days", mode="before")
    @classmethod
    def _day_list(cls, value: object) -> object:
        if isinstance(value, str):
            return [int(item.strip()) for item in value.split(",") if item.strip()]
        return value

    @field_validator("dunning_retry_days")
    @classmethod
    def _increasing_days(cls, value: list[int]) -> list[int]:
        if not 1 <= len(value) <= 10 or any(day < 1 or day > 60 for day in value) or value != sorted(set(value)):
            raise ValueError("DUNNING_RETRY_DAYS: 1 to 10 increasing whole days, each 1 to 60 (e.g. 1,3,5)")
        return value

    @field_validator("answer_provider")
    @classmethod
    def _known_provider(cls, value: str) -> str:
        if value not in ANSWER_PROVIDERS:
            known = ", ".join(ANSWER_PROVIDERS)
            raise ValueError(f"ANSWER_PROVIDER {value!r} is not an answer provider; use one of: {known}")
        return value

    @field_validator("backup_schedule")
    @classmethod
    def _cron_expression(cls, value: str) -> str:
        """Five fields (minute hour day month day-of-week), each one huey's crontab accepts (the
        scheduler `adapters.cron_schedule` evaluates it with)."""
        from huey import crontab

        parts = value.split()
        if not parts:
            return ""
        if len(parts) != 5:
            raise ValueError(
                f"BACKUP_SCHEDULE {value!r} is not a cron expression: five fields are needed (minute hour day "
                "month day-of-week), e.g. '0 3 * * *' for 03:00 UTC every day"
            )
        try:
            crontab(*parts, strict=True)
        except ValueError as error:
            raise ValueError(f"BACKUP_SCHEDULE {value!r} is not a cron expression: {error}") from error
        return " ".join(parts)

    @field_validator("trusted_proxies", "cors_origins", "job_extra_modules", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for item in value:
            ipaddress.ip_network(item, strict=False)  # ValueError names the bad entry
        return value

    @field_validator(
        "rate_limit_login",
        "rate_limit_login_account",
        "rate_limit_register",
        "rate_limit_refresh",
        "rate_limit_refresh_session",
        "rate_limit_password_reset",
        "rate_limit_password_reset_account",
        "rate_limit_password_change",
    )
    @classmethod
    def _limit_string(cls, value: str | None) -> str | None:
        if value is not None:
            parse_many(value)  # e.g. "5/minute;20/hour"; ValueError when malformed
        return value

    @model_validator(mode="before")
    @classmethod
    def _pool_covers_the_threads(cls, data: object) -> object:
        """DB_POOL_SIZE defaults to WSGI_THREADS: each handler thread keeps one connection, so a
        steady load opens none (a pool smaller than the threads opens and closes its overflow
        connections on every burst: issue 11)."""
        if isinstance(data, dict) and data.get("db_pool_size") is None and data.get("wsgi_threads") is not None:
            return {**data, "db_pool_size": data["wsgi_threads"]}
        return data

    @model_validator(mode="after")
    def _threads_fit_the_pool(self) -> Settings:
        connections = self.db_pool_size + self.db_max_overflow
        if self.wsgi_threads > connections:
            raise ValueError(
                f"WSGI_THREADS={self.wsgi_threads} is more than DB_POOL_SIZE + DB_MAX_OVERFLOW = "
                f"{self.db_pool_size} + {self.db_max_overflow} = {connections}: the extra handler threads would "
                "only wait for a connection (then answer 503). Set DB_POOL_SIZE to at least WSGI_THREADS "
                "(or leave it unset: it follows WSGI_THREADS), or lower WSGI_THREADS."
            )
        return self

    @model_validator(mode="after")
    def _openai_provider_needs_a_server(self) -> Settings:
        if self.answer_provider == "openai" and not self.llm_base_url:
            raise ValueError(
                "ANSWER_PROVIDER=openai needs LLM_BASE_URL, the API root of an OpenAI-compatible "
                "chat-completions server (e.g. https://api.openai.com/v1); set it, or use ANSWER_PROVIDER=extractive"
            )
        return self

    @model_validator(mode="after")
    def _stripe_needs_a_key(self) -> Settings:
        if self.payment_provider == "stripe" and self.stripe_api_key is None:
            raise ValueError("PAYMENT_PROVIDER=stripe needs STRIPE_API_KEY (and STRIPE_WEBHOOK_SECRET for its events)")
        return self

    @model_validator(mode="after")
    def _redis_queue_needs_redis(self) -> Settings:
        if self.job_queue == "redis" and not self.redis_url:
            raise ValueError("JOB_QUEUE=redis needs REDIS_URL")
        return self

    @model_validator(mode="after")
    def _check_secret(self) -> Settings:
        if self.jwt_secret is not None and len(self.jwt_secret.get_secret_value().encode()) < MIN_SECRET_BYTES:
            raise ValueError(f"JWT_SECRET must be at least {MIN_SECRET_BYTES} bytes (RFC 7518 section 3.2)")
        return self

    @cached_property
    def signing_key(self) -> str:
        """The HS256 key: JWT_SECRET, or in development a key generated once under VAR_DIR.

        Raises:
            ConfigurationError: in production when JWT_SECRET is not set.
        """
        if self.jwt_secret is not None:
            return self.jwt_secret.get_secret_value()
        if self.env == "production":
            raise ConfigurationError("JWT_SECRET must be set when ENV=production")
        path = self.var_dir / "jwt_secret"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # never world-readable
            with os.fdopen(descriptor, "w") as stream:
                stream.write(secrets.token_urlsafe(48))
            log.warning("jwt_secret_generated", path=str(path), hint="set JWT_SECRET outside development")
        else:
            log.warning("jwt_secret_from_file", path=str(path), hint="set JWT_SECRET outside development")
        return path.read_text().strip()

    @cached_property
    def encryption_key_list(self) -> list[str]:
        """The Fernet keys for secrets at rest, newest first: ENCRYPTION_KEYS, or in development
        and tests a key generated once under VAR_DIR (like the JWT secret).

        Raises:
            ConfigurationError: in production when ENCRYPTION_KEYS is not set, or a key is not a
                Fernet key (32 url-safe base64-encoded bytes).
        """
        if self.encryption_keys is not None:
            keys = [key.strip() for key in self.encryption_keys.get_secret_value().split(",") if key.strip()]
            if not keys:
                raise ConfigurationError("ENCRYPTION_KEYS names no key")
            for key in keys:
                try:
                    raw = base64.urlsafe_b64decode(key.encode())
                except (ValueError, binascii.Error) as error:
                    raise ConfigurationError("ENCRYPTION_KEYS holds a key that is not url-safe base64") from error
                if len(raw) != 32:
                    raise ConfigurationError("each key of ENCRYPTION_KEYS is 32 bytes, url-safe base64 (a Fernet key)")
            return keys
        if self.env == "production":
            raise ConfigurationError("ENCRYPTION_KEYS must be set when ENV=production")
        path = self.var_dir / "encryption_key"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            try:
                descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # never world-readable
            except FileExistsError:  # another process made it first
                return [path.read_text().strip()]
            with os.fdopen(descriptor, "w") as stream:
                stream.write(base64.urlsafe_b64encode(secrets.token_bytes(32)).decode())
            log.warning("encryption_key_generated", path=str(path), hint="set ENCRYPTION_KEYS outside development")
        return [path.read_text().strip()]

    @cached_property
    def stripe_webhook_secret_list(self) -> list[str]:
        """STRIPE_WEBHOOK_SECRET's secrets (none when unset: every Stripe delivery is refused)."""
        return _secret_list(self.stripe_webhook_secret)

    @cached_property
    def fake_webhook_secret_list(self) -> list[str]:
        """The fake provider's webhook secrets: FAKE_WEBHOOK_SECRET, or a random secret made once
        under VAR_DIR (private to the machine, shared by its processes; the fake's events are
        signed and checked in the worker, so one machine's secret is all they need)."""
        if self.fake_webhook_secret is not None:
            return _secret_list(self.fake_webhook_secret)
        path = self.var_dir / "fake_webhook_secret"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            try:
                descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # never world-readable
            except FileExistsError:  # another process made it first
                return [path.read_text().strip()]
            with os.fdopen(descriptor, "w") as stream:
                stream.write("whsec_" + secrets.token_urlsafe(32))
        return [path.read_text().strip()]

    @field_validator("password_reset_url")
    @classmethod
    def _has_token_placeholder(cls, value: str) -> str:
        if "{token}" not in value:
            raise ValueError("PASSWORD_RESET_URL must contain {token}")
        return value

    @property
    def job_backend(self) -> Literal["sqlite", "redis"]:
        """The job queue in use: JOB_QUEUE, or with `auto` Redis when REDIS_URL is set."""
        if self.job_queue == "auto":
            return "redis" if self.redis_url else "sqlite"
        return self.job_queue

    @property
    def job_queue_file(self) -> Path:
        """The SqliteHuey file of the embedded job queue, under VAR_DIR."""
        return self.var_dir / "job-queue.db"

    @property
    def documents_dir(self) -> Path:
        """Where uploaded documents are kept (content-addressed), under VAR_DIR."""
        return self.var_dir / "documents"

    @property
    def backup_directory(self) -> Path:
        """Where backups are written and listed: BACKUP_DIR, or VAR_DIR/backups."""
        return self.backup_dir if self.backup_dir is not None else self.var_dir / "backups"

    @property
    def is_sqlite(self) -> bool:
        """Whether DATABASE_URL names an SQLite database."""
        return self.database_url.startswith("sqlite")


def _secret_list(value: SecretStr | None) -> list[str]:
    """The non-empty items of a comma-separated secret setting."""
    if value is None:
        return []
    return [item.strip() for item in value.get_secret_value().split(",") if item.strip()]
