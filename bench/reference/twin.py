"""The FastAPI twin (issue 13): Charter's authenticated task page and task creation written the
way a FastAPI user would, as the peer Charter's figures are compared with.

``uvicorn --factory bench.apps:fastapi_twin`` serves it. It reads the settings the bench gives
Charter (`bench.harness.server_environment`: DATABASE_URL, JWT_SECRET, JWT_ISSUER, JWT_AUDIENCE,
with Charter's defaults), so an access token from Charter's login works here too, and it uses
Charter's ORM models on the same tables.

Per request: `async def` endpoints; pyjwt HS256 verification as `services.tokens.TokenIssuer.verify`
does it (algorithm pinned, ``typ: at+jwt``, issuer, audience, the same required claims); one
query that the session is open and the account active (as
`persistence.accounts.sessions.AuthSessionRepository.active_user`, without Charter's once-a-minute
``last_used_at`` write); then the ORM on a SQLAlchemy 2 `AsyncEngine` (psycopg 3, async; pool of 10),
answered through pydantic models. Only the first page is served (no ``cursor`` parameter), but
its ``next_cursor`` is encoded as Charter encodes it (`services.cursors.encode_values`).
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Annotated, Literal

import jwt
from fastapi import Depends, FastAPI, HTTPException, Query, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field, PlainSerializer
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

from persistence.accounts.models import AuthSession, User
from persistence.tasks.models import NO_DUE_DATE, TASK_PRIORITIES, Task

REQUIRED_CLAIMS = ["iss", "aud", "sub", "exp", "iat", "jti", "sid"]
"""What `services.tokens.TokenIssuer.verify` requires of an access token."""


class TwinSettings(BaseSettings):
    """The part of Charter's settings (`server.settings.Settings`) the twin needs, same names and defaults."""

    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    database_url: str
    jwt_secret: str
    jwt_issuer: str = "charter"
    jwt_audience: str = "charter-api"


settings = TwinSettings()
engine = create_async_engine(settings.database_url, pool_size=10)
SessionLocal = async_sessionmaker(engine, expire_on_commit=False)


@asynccontextmanager
async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
    """Close the pool's connections when the server stops."""
    yield
    await engine.dispose()


app = FastAPI(title="Charter's FastAPI twin (benchmark reference)", lifespan=lifespan)
bearer = HTTPBearer(auto_error=False)


async def get_db() -> AsyncIterator[AsyncSession]:
    """One session per request (FastAPI caches the dependency, so the auth check shares it)."""
    async with SessionLocal() as session:
        yield session


def _unauthorized() -> HTTPException:
    return HTTPException(401, "The access token is invalid or expired.", headers={"WWW-Authenticate": "Bearer"})


async def current_user(
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    db: Annotated[AsyncSession, Depends(get_db)],
) -> User:
    """The user of a valid access token whose session is open and account active; else 401."""
    if credentials is None:
        raise _unauthorized()
    try:
        decoded = jwt.api_jwt.decode_complete(
            credentials.credentials,
            settings.jwt_secret,
            algorithms=["HS256"],
            audience=settings.jwt_audience,
            issuer=settings.jwt_issuer,
            options={"require": REQUIRED_CLAIMS},
        )
        if decoded["header"].get("typ") != "at+jwt":
            raise _unauthorized()
        user_id, session_id = uuid.UUID(decoded["payload"]["sub"]), uuid.UUID(decoded["payload"]["sid"])
    except (jwt.PyJWTError, ValueError, TypeError, AttributeError) as error:
        raise _unauthorized() from error
    user = await db.scalar(
        select(User)
        .join(AuthSession, AuthSession.user_id == User.id)
        .where(
            AuthSession.id == session_id,
            AuthSession.user_id == user_id,
            AuthSession.revoked_at.is_(None),
            AuthSession.expires_at > datetime.now(UTC),
            User.status == "active",
        )
    )
    if user is None:
        raise _unauthorized()
    return user


def _timestamp(value: datetime) -> str:
    """As Charter writes instants (`handlers.responses.timestamp`): UTC, microseconds, a `Z`."""
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


Instant = Annotated[datetime, PlainSerializer(_timestamp, return_type=str)]


class TaskOut(BaseModel):
    """Charter's `Task` schema, read from the ORM object."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    title: str
    description: str | None
    completed: bool
    completed_at: Instant | None
    priority: str
    due_at: Instant | None
    recurrence: str | None
    tags: list[str]
    version: int
    created_at: Instant
    updated_at: Instant


class TaskPage(BaseModel):
    """One page of tasks and the next page's cursor (null on the last page)."""

    items: list[TaskOut]
    next_cursor: str | None


class TaskCreate(BaseModel):
    """The part of Charter's `TaskCreate` the bench sends: a title and, optionally, a priority."""

    model_config = ConfigDict(extra="forbid")

    title: str = Field(min_length=1, max_length=200, pattern=r"^[^\x00]*[^\s\x00][^\x00]*$")
    priority: Literal["low", "medium", "high", "urgent"] = "medium"


def _cursor(task: Task) -> str:
    """The position after `task` under the default sort, as `services.cursors.encode_values` writes it."""
    raw = json.dumps(
        {"s": "created_at:desc", "v": [task.created_at.astimezone(UTC).isoformat(), str(task.id)]},
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _own(user_id: uuid.UUID, user: User) -> None:
    """Charter's `x-access: owner`: another user's id in the path is answered 404."""
    if user_id != user.id:
        raise HTTPException(404, "Not found")


@app.get("/api/v1/users/{user_id}/tasks", response_model=TaskPage)
async def list_tasks(
    user_id: uuid.UUID,
    user: Annotated[User, Depends(current_user)],
    db: Annotated[AsyncSession, Depends(get_db)],
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> dict:
    """The first page of the caller's tasks, newest first (keyset order: created_at, id descending).
    The tags come with the model's ``lazy="selectin"`` relationship: a second SELECT per page."""
    _own(user_id, user)
    rows = list(
        await db.scalars(
            select(Task)
            .where(Task.owner_id == user.id)
            .order_by(Task.created_at.desc(), Task.id.desc())
            .limit(limit + 1)
        )
    )
    return {"items": rows[:limit], "next_cursor": _cursor(rows[limit - 1]) if len(rows) > limit else None}


@app.post("/api/v1/users/{user_id}/tasks", status_code=201, response_model=TaskOut)
async def create_task(
    user_id: uuid.UUID,
    body: TaskCreate,
    response: Response,
    user: Annotated[User, Depends(current_user)],
    db: Annotated[AsyncSession, Depends(get_db)],
) -> Task:
    """Create an open task; 201 with it, its Location and ETag (as Charter answers)."""
    _own(user_id, user)
    now = datetime.now(UTC)
    task = Task(
        id=uuid.uuid4(),
        owner_id=user.id,
        title=body.title,
        description=None,
        completed=False,
        completed_at=None,
        priority=body.priority,
        priority_rank=TASK_PRIORITIES.index(body.priority),
        due_at=None,
        due_at_key=NO_DUE_DATE,
        recurrence=None,
        created_at=now,
        updated_at=now,
        version=1,
        tag_rows=[],
    )
    db.add(task)
    await db.commit()
    response.headers["Location"] = f"/api/v1/users/{user_id}/tasks/{task.id}"
    response.headers["ETag"] = f'"{task.version}"'
    return task
