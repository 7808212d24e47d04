"""Mail the service sends, and the interface it is sent through."""

from __future__ import annotations

from email.message import EmailMessage
from typing import Protocol


class Mailer(Protocol):
    """Sends mail; implementations (`adapters.mail`) deliver in the background."""

    def send(self, message: EmailMessage) -> None:
        """Queue `message` for delivery (the sender is filled in by the mailer)."""


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
