"""Usage over time for the admin console: tasks, seconds generated, credits, failures."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from soragate.core.usage import UNASSIGNED, counts, day_of


def summarize(
    rows: Sequence[dict[str, Any]], *, days: int, now: float, deleted: Sequence[dict[str, Any]] = ()
) -> dict[str, Any]:
    """Per day, account and key: ``rows`` are tasks (created_at, status, provider, owner_id,
    cost, assets), ``deleted`` the sums kept for deleted ones (day, provider, owner_id, and
    the figures ``counts`` gives)."""
    today = dt.datetime.fromtimestamp(now, dt.UTC).date()
    dates = [(today - dt.timedelta(days=n)).isoformat() for n in range(days - 1, -1, -1)]
    per_day: dict[str, dict[str, float]] = {d: defaultdict(float) for d in dates}
    per_provider: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    per_key: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    sums = [(day_of(row["created_at"]), row["provider"], row["owner_id"], counts(row)) for row in rows]
    sums += [(row["day"], row["provider"], row["owner_id"], row) for row in deleted]
    for day, provider, owner_id, figures in sums:
        bucket = per_day.get(day)
        if bucket is None:
            continue
        for target in (bucket, per_provider[provider or UNASSIGNED], per_key[owner_id]):
            for name in ("tasks", "completed", "failed", "seconds", "credits"):
                target[name] += figures[name]

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
