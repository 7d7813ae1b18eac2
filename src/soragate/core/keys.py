"""API keys as every layer sees them (the store keeps only a hash of each secret)."""

from __future__ import annotations

from dataclasses import dataclass


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

    @property
    def credits_remaining(self) -> float | None:
        return None if self.credit_limit is None else max(0.0, self.credit_limit - self.credits_used)

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"
