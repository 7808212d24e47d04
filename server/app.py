"""The app factory: the contract, connexion, the unit of work per request, and error handling."""

from __future__ import annotations

import gc
import time
import uuid
from datetime import timedelta
from typing import Any

import connexion
import flask
import redis
import structlog
from connexion import context as connexion_context
from connexion.jsonifier import Jsonifier
from connexion.middleware import MiddlewarePosition
from connexion.options import SwaggerUIOptions
from sqlalchemy import Engine

from adapters import resilience
from persistence.database import database_answers, make_engine, make_session_factory
from persistence.unit_of_work import UnitOfWork
from server import analytics as analytics_wiring
from server.contract import RouteTable, access_policies, api_key_scopes, bundle
from server.edge import install_edge
from server.edge.docs import SWAGGER_UI_PATH, connexion_middlewares
from server.edge.public_cors import OriginsOf
from server.edge.rate_limit import FallbackStorage
from server.integration import content_type, context, metrics
from server.integration.idempotency import release_on_failure
from server.integration.operations import prepare_operations
from server.integration.payments import provider_event_config, relay_fake_events
from server.integration.problems import install_problem_handlers
from server.integration.resolver import OrjsonModule, TagResolver
from server.integration.route_limits import install_route_limits, make_limiter
from server.integration.security import security_map
from server.integration.validation import VALIDATORS, ProblemParameterValidator, check_response_body
from server.integration.wsgi_bridge import BufferedWSGIBridge
from server.log_config import configure_logging
from server.settings import Settings
from server.tracing import add_trace_ids, start_tracing
from server.worker import event_publisher, make_job_engine, make_mailer
from services import caching, public_chatbots
from services.accounts import AuthConfig, Lockout, PasswordReset
from services.analytics import RequestStats
from services.clock import SystemClock
from services.passwords import PasswordHasher, PasswordPolicy
from services.tokens import TokenIssuer

log = structlog.get_logger(__name__)

API_PREFIX = "/api/v1"


def create_app(settings: Settings | None = None, *, edge: bool = True, span_exporter: Any = None) -> connexion.FlaskApp:
    """Build the ASGI application.

    Args:
        settings: the configuration; read from the environment (and `.env`) when omitted.
        edge: install the edge (request id, access log and metrics, security headers, CORS,
            rate limits, body limit). Only `bench/` turns it off, to measure what it costs.
        span_exporter: trace with this OpenTelemetry span exporter (tests: InMemorySpanExporter),
            as OTEL_EXPORTER_OTLP_ENDPOINT would with OTLP (`server.tracing`); neither: no tracing.

    Raises:
        server.settings.ConfigurationError: e.g. production without JWT_SECRET.
        server.contract.ContractError: an operation without a valid `x-access` policy, or with
            an `x-api-key-scopes` that names an unknown scope or opens a key-less operation to keys.
    """
    settings = settings or Settings()
    tracing = start_tracing(
        service_name=settings.otel_service_name, endpoint=settings.otel_exporter_otlp_endpoint, exporter=span_exporter
    )
    configure_logging(level=settings.log_level, fmt=settings.log_format, trace_ids=add_trace_ids)
    spec = bundle()
    engine = make_engine(
        settings.database_url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_timeout=settings.db_pool_timeout_seconds,
        pool_pre_ping=settings.db_pool_pre_ping,
        connect_timeout=settings.db_connect_timeout_seconds,
        statement_timeout_ms=settings.db_statement_timeout_ms,
    )
    if tracing is not None:
        tracing.instrument_engine(engine)
    tokens = TokenIssuer(
        key=settings.signing_key,
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        access_ttl_seconds=settings.access_token_ttl_seconds,
    )
    auth = AuthConfig(
        tokens=tokens,
        passwords=PasswordHasher(settings.bcrypt_rounds),
        refresh_ttl_seconds=settings.refresh_token_ttl_seconds,
        policy=PasswordPolicy(min_length=settings.password_min_length, min_strength=settings.password_min_strength),
        lockout=Lockout(
            max_failures=settings.login_max_failures,
            window=timedelta(seconds=settings.login_failure_window_seconds),
            duration=timedelta(seconds=settings.login_lockout_seconds),
        ),
        reset=PasswordReset(
            ttl=timedelta(seconds=settings.password_reset_ttl_seconds),
            url_template=settings.password_reset_url,
            mailer=make_mailer(settings),
        ),
    )

    job_engine = make_job_engine(settings)[0]
    webhooks_config = job_engine.context["webhooks"]  # ConfigurationError here: no ENCRYPTION_KEYS in production
    request_stats = RequestStats()
    analytics_flusher = analytics_wiring.AnalyticsFlusher(
        request_stats, make_session_factory(engine), interval=settings.analytics_flush_seconds
    )
    app = connexion.FlaskApp(
        __name__,
        specification_dir=str(settings.var_dir.resolve()),
        jsonifier=Jsonifier(OrjsonModule),
        middlewares=connexion_middlewares(),
        lifespan=analytics_wiring.lifespan(analytics_flusher),
    )
    ProblemParameterValidator.routes = RouteTable(spec)
    app.add_api(
        spec,
        base_path="",
        resolver=TagResolver(),
        strict_validation=True,
        validate_responses=True,
        validator_map=VALIDATORS,
        security_map=security_map(tokens),
        swagger_ui_options=SwaggerUIOptions(
            serve_spec=False, spec_path=f"{API_PREFIX}/openapi.json", swagger_ui_path=SWAGGER_UI_PATH
        ),
    )
    # One thread hop per request instead of a2wsgi's streaming hand-overs (server/integration/wsgi_bridge.py).
    # connexion keeps the bridge on its private `_middleware_app`; re-check on upgrades.
    # Event streams are forwarded chunk by chunk from threads of their own.
    app._middleware_app.asgi_app = BufferedWSGIBridge(
        app.app,
        workers=settings.wsgi_threads,
        stream_threads=settings.sse_stream_threads,
        ping_seconds=settings.sse_ping_seconds,
        send_timeout_seconds=settings.sse_send_timeout_seconds,
    )
    if tracing is not None:  # outermost: every request gets a server span, whoever answers it
        middleware, options = tracing.asgi_middleware(RouteTable(spec))
        app.add_middleware(middleware, position=MiddlewarePosition.BEFORE_EXCEPTION, **options)
    edge_storage = FallbackStorage(settings.redis_url, key_prefix="charter-edge")
    if edge:
        install_edge(
            app,
            settings,
            spec,
            edge_storage,
            api_prefix=API_PREFIX,
            public_origins=public_origins_reader(
                engine, caching.cache_of(job_engine), settings.public_chatbot_cache_ttl_seconds
            ),
            request_stats=request_stats,
        )
    install_problem_handlers(app, spec)

    flask_app = app.app
    flask_app.extensions["charter_tracing"] = tracing
    redis_client = (
        redis.Redis.from_url(settings.redis_url, socket_timeout=0.5, socket_connect_timeout=0.5)
        if settings.redis_url
        else None
    )
    flask_app.extensions[context.EXTENSION] = context.AppContext(
        settings=settings,
        engine=engine,
        session_factory=make_session_factory(engine),
        read_session_factory=make_session_factory(engine, autocommit=True),
        auth=auth,
        clock=SystemClock(),
        probes={
            "database": lambda: database_answers(engine),
            "redis": (lambda: redis_answers(redis_client)) if redis_client is not None else None,
        },
        started_at=time.monotonic(),
        service_info=context.ServiceInfo(
            name=spec["info"]["title"],
            version=spec["info"]["version"],
            docs_url=f"{API_PREFIX}/ui/",
            openapi_url=f"{API_PREFIX}/openapi.json",
            api_prefix=API_PREFIX,
        ),
        access=access_policies(spec),
        api_key_scopes=api_key_scopes(spec),
        jobs=job_engine,
        webhooks=webhooks_config,
        publish_events=lambda uow, events: None,
        breaker_states=resilience.states,
        payment_provider=job_engine.context["billing"].provider,
        billing=job_engine.context["billing"],
    )
    flask_app.extensions[analytics_wiring.EXTENSION] = analytics_flusher
    app_context = flask_app.extensions[context.EXTENSION]
    app_context.publish_events = event_publisher(job_engine, lambda: app_context.clock)
    # Payments (issue 17): the fake provider's events queued as jobs (FakeEventRelay); the
    # provider is the one billing charges through (built with the job engine's context).
    relay_fake_events(
        app_context.payment_provider,
        units=lambda: UnitOfWork(app_context.session_factory),
        clock=lambda: app_context.clock,
        engine=job_engine,
    )
    app_context.provider_events = provider_event_config(settings)
    flask_app.before_request(context.load_principal)
    flask_app.after_request(_commit_on_success)
    flask_app.teardown_request(_end_unit_of_work)
    # Connexion adds the operations' Flask views only when it builds its middleware stack
    # (normally on the first request); build it now so they can be prepared and the route
    # limits can wrap them. After load_principal, so the per-user limit knows the user.
    app.middleware.app, app.middleware.middleware_stack = app.middleware._build_middleware_stack()
    prepare_operations(flask_app)
    content_type.install()
    if edge:
        install_route_limits(flask_app, make_limiter(settings=settings), spec, settings)
    metrics.watch_pool(engine, settings.db_pool_size, settings.db_max_overflow)
    if settings.db_pool_size < settings.wsgi_threads:
        log.warning(
            "db_pool_smaller_than_threads",
            db_pool_size=settings.db_pool_size,
            wsgi_threads=settings.wsgi_threads,
            hint="under load the pool opens and closes connections; set DB_POOL_SIZE to WSGI_THREADS",
        )
    return app


def public_origins_reader(engine: Engine, cache: caching.Cache | None = None, ttl_seconds: float = 0) -> OriginsOf:
    """Reads a public chatbot's allowed origins (by `public_id` or visitor conversation id) in a
    unit of work of its own, without a transaction: the public paths' CORS layer. By `public_id`
    they come from the cache's entry of the chatbot's public settings when it is there (a
    widget's `GET` of its settings then reads nothing from the database)."""
    sessions = make_session_factory(engine, autocommit=True)

    def origins_of(public_id: str | None, conversation_id: uuid.UUID | None) -> list[str]:
        with UnitOfWork(sessions) as uow:
            return public_chatbots.allowed_origins(
                uow=uow, public_id=public_id, conversation_id=conversation_id, cache=cache, ttl_seconds=ttl_seconds
            )

    return origins_of


def prepare_for_serving(app: connexion.FlaskApp) -> connexion.FlaskApp:
    """Freeze the start-up heap of a serving process; returns ``app``.

    Everything built at start-up (the bundled contract, compiled validators, routes, the
    middleware stack) lives as long as the process. Without this, every full (generation 2)
    garbage collection walks all of it on some request's path: that was the p99 of the hot path
    (about 100 ms at 32 connections; issue 7). ``gc.freeze()`` (CPython 3.7+) moves the surviving
    objects to a permanent generation the collector no longer scans. Call it once per process,
    after ``create_app``; not in tests, which build many apps.
    """
    gc.collect()
    gc.freeze()
    return app


def redis_answers(client: redis.Redis) -> bool:
    """Whether Redis answers a PING (within the client's 0.5 s timeouts); a failure is logged
    with its error class."""
    try:
        client.ping()
    except redis.RedisError as error:
        log.warning("readiness_check_failed", dependency="redis", error=type(error).__name__)
        return False
    return True


def _commit_on_success(response: flask.Response) -> flask.Response:
    """Commit once when the handler answered below 400; roll back otherwise.

    A write's answer is checked against the contract *before* the commit: connexion checks
    it too, but only after this point, and a 500 for a broken answer must not leave its
    write behind for the client's retry to trip over.
    """
    unit = flask.g.get("unit_of_work")
    if unit is None:
        return response
    if response.status_code >= 400:
        unit.rollback()
        release_on_failure(True)
        return response
    if flask.request.method != "GET" and not response.is_streamed:  # a stream is produced after this point
        check_response_body(connexion_context.operation, response.status_code, response.mimetype, response.get_data())
    unit.commit()
    return response


def _end_unit_of_work(error: BaseException | None) -> None:
    """Close the session; a failed request's changes are rolled back, unless its domain error
    is one whose decision must persist (e.g. revoking a session on refresh-token reuse)."""
    unit = flask.g.pop("unit_of_work", None)
    try:
        if unit is not None:
            unit.finish(error)
    finally:
        # After the unit of work has ended: on SQLite its transaction may hold the write lock,
        # which the release (a transaction of its own) would otherwise wait for in vain.
        release_on_failure(error is not None)
