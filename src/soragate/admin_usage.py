"""Usage over time for the admin console: tasks, seconds generated, credits, failures."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from typing import Any


def summarize(rows: list[dict[str, Any]], *, days: int, now: float) -> dict[str, Any]:
    today = dt.datetime.fromtimestamp(now, dt.UTC).date()
    dates = [(today - dt.timedelta(days=n)).isoformat() for n in range(days - 1, -1, -1)]
    per_day: dict[str, dict[str, float]] = {d: defaultdict(float) for d in dates}
    per_provider: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    per_key: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for row in rows:
        date = dt.datetime.fromtimestamp(row["created_at"], dt.UTC).date().isoformat()
        bucket = per_day.get(date)
        if bucket is None:
            continue
        status = row["status"]
        seconds = 0.0
        if status == "completed":
            video = next((a for a in row["assets"] or [] if a.get("variant") == "video"), None)
            seconds = float(video.get("duration") or 0) if video else 0.0
        charged = float(row["cost"] or 0) if status not in ("failed", "cancelled") else 0.0
        for target in (bucket, per_provider[row["provider"] or "unassigned"], per_key[row["owner_id"]]):
            target["tasks"] += 1
            target["completed"] += status == "completed"
            target["failed"] += status == "failed"
            target["seconds"] += seconds
            target["credits"] += charged

    def finish(values: dict[str, float]) -> dict[str, Any]:
        ended = values["completed"] + values["failed"]
        return {
            "tasks": int(values["tasks"]),
            "completed": int(values["completed"]),
            "failed": int(values["failed"]),
            "seconds": round(values["seconds"], 1),
            "credits": round(values["credits"], 4),
            "failure_rate": round(values["failed"] / ended, 4) if ended else 0.0,
        }

    return {
        "object": "usage",
        "days": [{"date": d, **finish(per_day[d])} for d in dates],
        "providers": [{"provider": p, **finish(v)} for p, v in sorted(per_provider.items())],
        "keys": [{"key_id": k, **finish(v)} for k, v in sorted(per_key.items())],
    }
