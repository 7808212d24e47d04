"""Dependency checks for the readiness probe."""

from __future__ import annotations

import structlog
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from persistence.database import ping

log = structlog.get_logger(__name__)


def check_dependencies(*, engine: Engine) -> dict[str, str]:
    """``{"database": "ok" | "unavailable"}``; a failure is logged with its error class."""
    try:
        ping(engine)
        database = "ok"
    except SQLAlchemyError as error:
        log.warning("readiness_check_failed", dependency="database", error=type(error).__name__)
        database = "unavailable"
    return {"database": database}
