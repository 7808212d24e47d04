"""The app factory: the contract, connexion, the unit of work per request, and error handling."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import connexion
import flask
import inflection
import structlog
from connexion.middleware import MiddlewarePosition
from connexion.options import SwaggerUIOptions
from connexion.resolver import Resolution, Resolver

from persistence.database import make_engine, make_session_factory
from server import context
from server.contract import bundle
from server.log_config import configure_logging
from server.problems import install_problem_handlers
from server.request_context import RequestIdMiddleware
from server.security import security_map
from server.settings import Settings
from server.validation import VALIDATORS
from services.accounts import AuthConfig
from services.errors import DomainError
from services.passwords import PasswordHasher
from services.tokens import TokenIssuer

log = structlog.get_logger(__name__)

API_PREFIX = "/api/v1"


@dataclass(frozen=True)
class ServiceInfo:
    """What `GET /` tells about the service (brief 001)."""

    name: str
    version: str
    docs_url: str
    openapi_url: str
    api_prefix: str


class TagResolver(Resolver):
    """Resolve an operation to ``handlers.<tag>.<operationId in snake_case>``: camelCase
    operationIds for SDKs, one handler module per tag for us (ARCHITECTURE.md)."""

    def resolve(self, operation: Any) -> Resolution:
        tag = operation._operation["tags"][0]
        module = inflection.underscore(tag).replace("-", "_")
        function = inflection.underscore(operation.operation_id)
        return Resolution(self.resolve_function_from_operation_id(f"handlers.{module}.{function}"),
                          operation.operation_id)


def create_app(settings: Settings | None = None) -> connexion.FlaskApp:
    """Build the ASGI application.

    Args:
        settings: the configuration; read from the environment (and `.env`) when omitted.

    Raises:
        server.settings.ConfigurationError: e.g. production without JWT_SECRET.
    """
    settings = settings or Settings()
    configure_logging(level=settings.log_level, fmt=settings.log_format)
    spec = bundle()
    engine = make_engine(
        settings.database_url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_timeout=settings.db_pool_timeout_seconds,
        pool_pre_ping=settings.db_pool_pre_ping,
        connect_timeout=settings.db_connect_timeout_seconds,
    )
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
    )

    app = connexion.FlaskApp(__name__, specification_dir=str(settings.var_dir.resolve()))
    app.add_api(
        spec,
        base_path="",
        resolver=TagResolver(),
        strict_validation=True,
        validate_responses=True,
        validator_map=VALIDATORS,
        security_map=security_map(tokens),
        swagger_ui_options=SwaggerUIOptions(
            spec_path=f"{API_PREFIX}/openapi.json", swagger_ui_path=f"{API_PREFIX}/ui"
        ),
    )
    app.add_middleware(RequestIdMiddleware, position=MiddlewarePosition.BEFORE_EXCEPTION)
    install_problem_handlers(app)

    flask_app = app.app
    flask_app.json.sort_keys = False
    flask_app.json.compact = True
    flask_app.extensions[context.EXTENSION] = {
        "settings": settings,
        "engine": engine,
        "session_factory": make_session_factory(engine),
        "auth": auth,
        "started_at": time.monotonic(),
        "service_info": ServiceInfo(
            name=spec["info"]["title"],
            version=spec["info"]["version"],
            docs_url=f"{API_PREFIX}/ui/",
            openapi_url=f"{API_PREFIX}/openapi.json",
            api_prefix=API_PREFIX,
        ),
    }
    flask_app.before_request(context.load_principal)
    flask_app.after_request(_commit_on_success)
    flask_app.teardown_request(_end_unit_of_work)
    return app


def _commit_on_success(response: flask.Response) -> flask.Response:
    """Commit once when the handler answered below 400; roll back otherwise."""
    unit = flask.g.get("unit_of_work")
    if unit is not None:
        if response.status_code < 400:
            unit.commit()
        else:
            unit.rollback()
    return response


def _end_unit_of_work(error: BaseException | None) -> None:
    """Close the session; a failed request's changes are rolled back, unless its domain error
    is one whose decision must persist (e.g. revoking a session on refresh-token reuse)."""
    unit = flask.g.pop("unit_of_work", None)
    if unit is None:
        return
    try:
        if isinstance(error, DomainError) and error.persist_changes:
            unit.commit()
    finally:
        unit.close()
