"""The declarative base every area's models share, and the discovery of those models: each
area keeps its models in `persistence/<area>/models.py`, and nothing lists them by hand."""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType

from sqlalchemy import MetaData
from sqlalchemy.orm import DeclarativeBase

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Declarative base with constraint names that are the same on every database."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def load_models() -> list[ModuleType]:
    """Import every area's models module (``persistence.<area>.models``), so `Base.metadata`
    holds every table (what Alembic compares and the mappers resolve foreign keys against);
    returns the modules found."""
    import persistence

    return [
        importlib.import_module(module.name)
        for module in pkgutil.walk_packages(persistence.__path__, "persistence.")
        if module.name.endswith(".models")
    ]


def database_only_objects() -> set[str]:
    """Schema objects made by migrations that no model maps (e.g. PostgreSQL's full-text
    search column and its index): the union of the `DATABASE_ONLY_OBJECTS` each models module
    may declare. Migration checks leave these out when they compare models and database."""
    return {name for module in load_models() for name in getattr(module, "DATABASE_ONLY_OBJECTS", set())}
