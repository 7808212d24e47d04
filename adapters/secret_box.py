"""Secrets the service must keep readable (webhook signing secrets), encrypted at rest: the
adapter of the `services.webhooks.SecretBox` port over `cryptography`'s MultiFernet
(AES-128-CBC with HMAC-SHA256, a timestamped token), so the keys can be rotated: the first key
encrypts, every key decrypts, and `rotate` re-encrypts a token under the first key
(API_STYLE, "Credentials other than sessions")."""

from __future__ import annotations

from collections.abc import Sequence

from cryptography.fernet import Fernet, InvalidToken, MultiFernet


class UnreadableSecret(ValueError):
    """A stored token that none of the keys decrypts (a key was dropped too early, or the row was
    changed by hand)."""


class FernetBox:
    """Encrypts and decrypts short secrets under rotatable keys.

    Args:
        keys: Fernet keys (32 url-safe base64-encoded bytes each), newest first; at least one.

    Raises:
        ValueError: no key, or a malformed one.
    """

    def __init__(self, keys: Sequence[str]) -> None:
        if not keys:
            raise ValueError("at least one key is needed")
        self._fernet = MultiFernet([Fernet(key.encode()) for key in keys])

    def encrypt(self, plaintext: str) -> str:
        """`plaintext` encrypted under the first key, as a Fernet token (ASCII)."""
        return self._fernet.encrypt(plaintext.encode()).decode()

    def decrypt(self, token: str) -> str:
        """The plaintext of a token made under any of the keys.

        Raises:
            UnreadableSecret: no key decrypts it.
        """
        try:
            return self._fernet.decrypt(token.encode()).decode()
        except InvalidToken as error:
            raise UnreadableSecret("no encryption key decrypts this secret") from error

    def rotate(self, token: str) -> str:
        """The same plaintext, encrypted again under the first key.

        Raises:
            UnreadableSecret: no key decrypts it.
        """
        try:
            return self._fernet.rotate(token.encode()).decode()
        except InvalidToken as error:
            raise UnreadableSecret("no encryption key decrypts this secret") from error


def new_key() -> str:
    """A fresh Fernet key (for tests and `charter` operators)."""
    return Fernet.generate_key().decode()
