"""What a task counts for in the usage charts, by the day it was created."""

from __future__ import annotations

import datetime as dt
from typing import Any

# The longest span the charts show, in days (what deleted tasks' sums are kept for).
MAX_DAYS = 90
# A task without an account (refused before one was chosen) is charted under this name.
UNASSIGNED = "unassigned"


def day_of(timestamp: float) -> str:
    return dt.datetime.fromtimestamp(timestamp, dt.UTC).date().isoformat()


def counts(row: dict[str, Any]) -> dict[str, float]:
    """What one task (a row with status, cost and assets) adds to a chart's figures."""
    status = row["status"]
    seconds = 0.0
    if status == "completed":
        video = next((a for a in row["assets"] or [] if a.get("variant") == "video"), None)
        seconds = float(video.get("duration") or 0) if video else 0.0
    return {
        "tasks": 1,
        "completed": int(status == "completed"),
        "failed": int(status == "failed"),
        "seconds": seconds,
        "credits": float(row["cost"] or 0) if status not in ("failed", "cancelled") else 0.0,
    }
