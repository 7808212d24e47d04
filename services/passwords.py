"""Password hashing with bcrypt."""

from __future__ import annotations

import base64
import hashlib
import hmac

import bcrypt

_PREHASH_KEY = b"charter/password/v1"
"""Domain-separation key for the pre-hash; public on purpose (it is not a pepper)."""


def _prehash(password: str) -> bytes:
    """bcrypt reads at most 72 bytes and rejects longer input, so every password is first
    reduced to 44 bytes: base64(HMAC-SHA256(key, password)). Keying the HMAC with a constant
    of our own keeps hashes from being "shucked" with leaked plain SHA-256 lists (OWASP
    Password Storage Cheat Sheet, "Pre-Hashing Passwords with bcrypt")."""
    digest = hmac.new(_PREHASH_KEY, password.encode("utf-8"), hashlib.sha256).digest()
    return base64.b64encode(digest)


class PasswordHasher:
    """Hashes and checks passwords with bcrypt at a configured cost.

    Args:
        rounds: bcrypt cost factor (4..31; 12 by default in settings), i.e. 2**rounds iterations.
    """

    def __init__(self, rounds: int) -> None:
        self.rounds = rounds
        self._dummy_hash = self.hash("charter-timing-equaliser")

    def hash(self, password: str) -> str:
        """A new salted bcrypt hash of `password` (a 60-character ASCII string)."""
        return bcrypt.hashpw(_prehash(password), bcrypt.gensalt(self.rounds)).decode("ascii")

    def verify(self, password: str, password_hash: str | None) -> bool:
        """Whether `password` matches `password_hash`, in constant time.

        With `password_hash` None (unknown account) a dummy hash of the same cost is checked,
        so the answer takes about as long as for a wrong password and reveals nothing.
        """
        candidate = _prehash(password)
        if password_hash is None:
            bcrypt.checkpw(candidate, self._dummy_hash.encode("ascii"))
            return False
        try:
            return bcrypt.checkpw(candidate, password_hash.encode("ascii"))
        except ValueError:
            return False
