"""Uploaded inputs (reference images, character clips) and the characters made from them."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Upload:
    id: str
    owner_id: str
    path: str
    mime: str
    bytes: int
    width: int | None
    height: int | None
    purpose: str
    created_at: float


@dataclass(frozen=True)
class Character:
    id: str
    owner_id: str
    name: str
    username: str
    upload_id: str | None
    created_at: float
