"""API keys as every layer sees them (the store keeps only a hash of each secret)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# Credits are sums of decimal prices in binary floating point (0.4 + 0.4 + 0.4 is
# 1.2000000000000002): a balance within this of a price still pays for it.
CREDIT_TOLERANCE = 1e-6


@dataclass(frozen=True)
class ApiKey:
    id: str
    name: str
    prefix: str
    role: str
    created_at: float
    revoked_at: float | None
    credit_limit: float | None = None
    credits_used: float = 0.0
    # Brakes set by an admin; None: the server's default (SORAGATE_KEY_RATE_LIMIT, ...).
    rate_limit: int | None = None  # requests per minute that create or change something
    max_in_flight: int | None = None  # tasks queued or in progress at once

    @property
    def credits_remaining(self) -> float | None:
        if self.credit_limit is None:
            return None
        left = self.credit_limit - self.credits_used
        return 0.0 if left < CREDIT_TOLERANCE else round(left, 6)

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


# What an admin may limit on a key; null (None) lifts a limit (the brakes fall back to the
# server's defaults, which are unset unless configured).
LIMITS = ("credit_limit", "rate_limit", "max_in_flight")
# Beyond any real use, and within the database's integer column (Postgres: 32 bits).
MAX_WHOLE_LIMIT = 1_000_000
MAX_KEY_NAME_CHARS = 200
MAX_CREDIT_LIMIT = 1e12


class InvalidLimit(ValueError):
    def __init__(self, message: str, *, param: str) -> None:
        super().__init__(message)
        self.param = param


def parse_limits(data: Mapping[str, Any]) -> dict[str, float | int | None]:
    """The LIMITS present in ``data``, checked: ``credit_limit`` a number from 0 to
    MAX_CREDIT_LIMIT, ``rate_limit`` (requests per minute) and ``max_in_flight`` whole numbers
    from 1 to MAX_WHOLE_LIMIT."""
    limits: dict[str, float | int | None] = {}
    for name in LIMITS:
        if name not in data:
            continue
        value = data[name]
        if value is None:
            limits[name] = None
        elif name == "credit_limit":
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= MAX_CREDIT_LIMIT:
                raise InvalidLimit(
                    f"'credit_limit' must be a number from 0 to {MAX_CREDIT_LIMIT:g}, or null for unlimited.",
                    param=name,
                )
            limits[name] = float(value)
        else:
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_WHOLE_LIMIT:
                raise InvalidLimit(
                    f"'{name}' must be a whole number from 1 to {MAX_WHOLE_LIMIT:,}, or null for none.", param=name
                )
            limits[name] = value
    return limits
