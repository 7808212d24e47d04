"""Dependency checks for the readiness probe."""

from __future__ import annotations

import redis
import structlog
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from persistence.database import ping

log = structlog.get_logger(__name__)


def check_dependencies(*, engine: Engine, redis_client: redis.Redis | None) -> dict[str, str]:
    """The state of each dependency: ``database`` and ``redis`` are ``ok`` or ``unavailable``
    (``redis`` is ``not_configured`` without REDIS_URL). A failure is logged with its error class."""
    checks = {"database": "ok", "redis": "not_configured"}
    try:
        ping(engine)
    except SQLAlchemyError as error:
        log.warning("readiness_check_failed", dependency="database", error=type(error).__name__)
        checks["database"] = "unavailable"
    if redis_client is not None:
        try:
            redis_client.ping()
            checks["redis"] = "ok"
        except redis.RedisError as error:
            log.warning("readiness_check_failed", dependency="redis", error=type(error).__name__)
            checks["redis"] = "unavailable"
    return checks
