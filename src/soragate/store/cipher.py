"""Provider and webhook secrets encrypted at rest, with a key kept outside the database.

With ``SORAGATE_SECRET_KEY`` (or ``SORAGATE_SECRET_KEY_FILE``) set, every secret written is
stored as ``fernet:<token>`` (Fernet: AES-128-CBC with an HMAC-SHA256, from
``cryptography``) and read back transparently; a copy of the database alone no longer
gives the upstream keys away. Values without the marker are plaintext from before a key
was set: they keep working, and are encrypted when next written or by ``soragate secrets
encrypt``. Several keys, comma-separated, rotate: the first encrypts, every one decrypts.

A sealed value with no key, or with a key that does not open it, raises SecretKeyError
naming the value (checked for every stored secret when a process starts), never garbage.
"""

from __future__ import annotations

import binascii
from collections.abc import Iterable, Mapping
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from soragate.core.account_options import SECRET_OPTIONS
from soragate.errors import SecretKeyError
from soragate.settings import Settings

SEALED = "fernet:"
SETTING = "SORAGATE_SECRET_KEY (or SORAGATE_SECRET_KEY_FILE)"


def new_key() -> str:
    return Fernet.generate_key().decode()


def is_sealed(stored: str | None) -> bool:
    return isinstance(stored, str) and stored.startswith(SEALED)


class SecretCipher:
    def __init__(self, keys: Iterable[str] = ()) -> None:
        try:
            fernets = [Fernet(key.strip().encode()) for key in keys if key.strip()]
        except (ValueError, binascii.Error):
            raise SecretKeyError(
                f"{SETTING} is not a valid key: it must be 32 bytes in URL-safe base64, "
                "as `soragate secrets new-key` prints."
            ) from None
        self._primary = fernets[0] if fernets else None
        self._all = MultiFernet(fernets) if fernets else None

    @classmethod
    def from_settings(cls, settings: Settings) -> SecretCipher:
        if settings.secret_key is not None:
            text = settings.secret_key.get_secret_value()
        elif settings.secret_key_file is not None:
            try:
                text = settings.secret_key_file.read_text()
            except OSError as exc:
                raise SecretKeyError(
                    f"SORAGATE_SECRET_KEY_FILE cannot be read ({settings.secret_key_file}: {exc.strerror})."
                ) from None
        else:
            return cls()
        keys = text.replace("\n", ",").split(",")
        if not any(k.strip() for k in keys):
            raise SecretKeyError(f"{SETTING} is set but empty.")
        return cls(keys)

    @property
    def enabled(self) -> bool:
        return self._primary is not None

    def __repr__(self) -> str:  # never the keys
        return f"SecretCipher(enabled={self.enabled})"

    def seal(self, value: str) -> str:
        """What to store for ``value``: encrypted when a key is set ("" stays "")."""
        if self._primary is None or not value or is_sealed(value):
            return value
        return SEALED + self._primary.encrypt(value.encode()).decode()

    def open(self, stored: str, *, what: str) -> str:
        """The secret ``stored`` holds; ``what`` names it in errors."""
        if not is_sealed(stored):
            return stored
        if self._all is None:
            raise SecretKeyError(f"{what} is encrypted, but {SETTING} is not set.")
        try:
            return self._all.decrypt(stored[len(SEALED) :].encode()).decode()
        except InvalidToken:
            raise SecretKeyError(
                f"{SETTING} does not decrypt {what}: it is not the key the secret was encrypted with."
            ) from None

    def stale(self, stored: str) -> bool:
        """Whether ``stored`` should be rewritten: plaintext while a key is set, or sealed
        with a key other than the first."""
        if self._primary is None or not stored:
            return False
        if not is_sealed(stored):
            return True
        try:
            self._primary.decrypt(stored[len(SEALED) :].encode())
        except InvalidToken:
            return True
        return False

    def seal_options(self, options: Mapping[str, Any]) -> dict[str, Any]:
        return {k: self.seal(v) if k in SECRET_OPTIONS and isinstance(v, str) else v for k, v in options.items()}

    def open_options(self, options: Mapping[str, Any], *, what: str) -> dict[str, Any]:
        return {
            k: self.open(v, what=f"{what} option {k}") if k in SECRET_OPTIONS and isinstance(v, str) else v
            for k, v in options.items()
        }
