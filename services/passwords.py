"""Password hashing with bcrypt."""

from __future__ import annotations

import base64
import hashlib
import hmac

import bcrypt
from zxcvbn import zxcvbn

from services.errors import WeakPassword

MAX_CHECKED_LENGTH = 128
"""zxcvbn's cost grows with length; passwords are at most 128 characters (the contract)."""

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

    def needs_rehash(self, password_hash: str) -> bool:
        """Whether the hash was made with another cost than the configured one (so a login can
        upgrade it while the password is at hand)."""
        try:
            return int(password_hash.split("$")[2]) != self.rounds
        except (IndexError, ValueError):
            return True

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


class PasswordPolicy:
    """The password rules of NIST SP 800-63B (section 3.1.1.2): a minimum length, a maximum
    that allows passphrases (128, in the contract), no composition rules, and a check against
    common, guessable and context-specific passwords — done by zxcvbn (Dropbox's estimator),
    fed with the account's email and name.

    Args:
        min_length: the shortest password accepted (characters).
        min_strength: the lowest zxcvbn score accepted, 0 (guessable) to 4 (very unguessable).
    """

    def __init__(self, *, min_length: int, min_strength: int) -> None:
        self.min_length = min_length
        self.min_strength = min_strength

    def check(self, password: str, *, context: list[str], pointer: str = "/password") -> None:
        """Accept `password` or say why not.

        Args:
            context: words a guesser would try first for this account (email, its local part,
                the display name, the service's name).
            pointer: where the password is in the request body, for the problem.

        Raises:
            WeakPassword: with every reason found, in words for the user.
        """
        reasons = []
        if len(password) < self.min_length:
            reasons.append(f"Use at least {self.min_length} characters; a few unrelated words make a good passphrase.")
        result = zxcvbn(password[:MAX_CHECKED_LENGTH], user_inputs=context, max_length=MAX_CHECKED_LENGTH)
        if result["score"] < self.min_strength:
            feedback = result["feedback"]
            reasons.append(feedback.get("warning") or "This password is too easy to guess.")
            reasons.extend(feedback.get("suggestions") or [])
        if reasons:
            raise WeakPassword("The password was refused: " + " ".join(reasons), pointer=pointer, reasons=reasons)
