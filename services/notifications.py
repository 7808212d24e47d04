"""Notifications (issue 14): the in-app notifications a user reads and marks read, the mail the
service sends, and the interfaces mail is sent through."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from email.message import EmailMessage
from typing import TYPE_CHECKING, Any, Protocol

from services.clock import Clock
from services.cursors import decode_cursor, page
from services.errors import NotFound

if TYPE_CHECKING:
    from persistence.notifications.models import Notification
    from persistence.unit_of_work import UnitOfWork


@dataclass(frozen=True)
class NotificationPage:
    """One page of notifications (Core rows with `Notification`'s column names) and the cursor
    of the next page (None on the last page)."""

    items: list[Any]
    next_cursor: str | None


def list_notifications(
    *, uow: UnitOfWork, owner_id: uuid.UUID, limit: int, cursor: str | None = None, unread: bool | None = None
) -> NotificationPage:
    """A page of the owner's notifications, newest first (keyset cursor: created_at and id);
    `unread` True lists only unread ones, False only read ones.

    Raises:
        InvalidInput: a cursor this list did not make.
    """
    rows = uow.notifications.list_page(
        owner_id=owner_id, limit=limit + 1, unread=unread, before=decode_cursor(cursor) if cursor else None
    )
    items, next_cursor = page(rows, limit, lambda row: (row.created_at, row.id))
    return NotificationPage(items=items, next_cursor=next_cursor)


def mark_read(*, uow: UnitOfWork, clock: Clock, owner_id: uuid.UUID, notification_id: uuid.UUID) -> Notification:
    """Mark one of the owner's notifications read (now); one already read keeps its `read_at`.

    Raises:
        NotFound: no such notification of the owner.
    """
    uow.notifications.mark_read(owner_id=owner_id, now=clock.now(), notification_id=notification_id)
    notification = uow.notifications.get(owner_id=owner_id, notification_id=notification_id)
    if notification is None:
        raise NotFound("No notification with this id exists for you.")
    return notification


def mark_all_read(*, uow: UnitOfWork, clock: Clock, owner_id: uuid.UUID) -> int:
    """Mark every unread notification of the owner read (now); how many were unread."""
    return uow.notifications.mark_read(owner_id=owner_id, now=clock.now())


def exported_notifications(*, uow: UnitOfWork, owner_id: uuid.UUID) -> list[Notification]:
    """Every notification of the owner, oldest first: their data export's section."""
    return uow.notifications.all_of_owner(owner_id)


class Mailer(Protocol):
    """Sends mail; implementations (`adapters.mail`) deliver in the background."""

    def send(self, message: EmailMessage) -> None:
        """Queue `message` for delivery (the sender is filled in by the mailer)."""


class MailTransport(Protocol):
    """Sends mail now (`adapters.mail`'s `deliver`), for a job that retries what failed."""

    def deliver(self, message: EmailMessage) -> None:
        """Send `message` before returning (the sender is filled in).

        Raises:
            OSError, smtplib.SMTPException: the server could not be reached or refused it.
        """


def password_reset_message(*, to: str, link: str, ttl_minutes: int) -> EmailMessage:
    """The password reset mail: the link, how long it works, and what to do if unexpected."""
    message = EmailMessage()
    message["To"] = to
    message["Subject"] = "Reset your Charter password"
    message.set_content(
        "Someone (hopefully you) asked to reset the password of your Charter account.\n\n"
        f"Choose a new password here within {ttl_minutes} minutes:\n\n    {link}\n\n"
        "The link works once. If you did not ask for this, ignore this mail: your password stays as it is.\n"
    )
    return message
