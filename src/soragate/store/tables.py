"""The schema. Timestamps are UNIX seconds (float) so SQLite and Postgres agree."""

from __future__ import annotations

from sqlalchemy import JSON, Boolean, Column, Float, Index, Integer, MetaData, String, Table, Text

metadata = MetaData()

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("prefix", String(20), nullable=False),
    Column("key_hash", String(64), nullable=False, unique=True),
    Column("role", String(10), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("revoked_at", Float),
    Column("last_used_at", Float),
    # None: unlimited. Credits are reserved when a task is accepted and refunded if it fails.
    Column("credit_limit", Float),
    Column("credits_used", Float, nullable=False, server_default="0"),
    # Brakes (None: the server default, unset by default: unlimited). Requests per minute that
    # create or change something, and tasks queued or in progress at once.
    Column("rate_limit", Integer),
    Column("max_in_flight", Integer),
    # The request rate's shared state: when the key's bucket is full again (store.keys.take_request).
    Column("rate_next_at", Float, nullable=False, server_default="0"),
)

tasks = Table(
    "tasks",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("owner_id", String(40), nullable=False),
    Column("dialect", String(20), nullable=False),
    Column("kind", String(20), nullable=False),
    Column("model", String(100), nullable=False),
    Column("status", String(20), nullable=False),
    Column("progress", Integer, nullable=False, default=0),
    Column("params", JSON, nullable=False),
    Column("provider", String(100)),
    Column("upstream_id", String(200)),
    # None → never sent; "submitting" → a submit call may be in flight (uncertain after a
    # crash); "submitted" → the upstream accepted it and upstream_id is set.
    Column("submit_state", String(20)),
    Column("submit_attempts", Integer, nullable=False, default=0),
    # Failed tries at the current step (submit, poll or fetch); reset when a step succeeds.
    Column("step_errors", Integer, nullable=False, server_default="0"),
    # Accounts a submission already failed on in this round (failover skips them).
    Column("tried_accounts", JSON),
    Column("lease_owner", String(64)),
    Column("lease_until", Float),
    Column("next_check_at", Float, nullable=False),
    Column("assets", JSON, nullable=False),
    Column("error_code", String(64)),
    Column("error_message", Text),
    Column("created_at", Float, nullable=False),
    Column("started_at", Float),
    Column("completed_at", Float),
    Column("expires_at", Float),
    # When the retention sweep removed its files (expires_at passed): the task stays listed.
    Column("files_removed_at", Float),
    Column("updated_at", Float, nullable=False),
    Column("cost", Float, nullable=False, server_default="0"),
    Column("callback_url", Text),
    # When the upstream last called back about the task's job: a look whose request went out
    # before then may have missed the end, so the task is due again at once.
    Column("poked_at", Float),
    # The upstream's answer that the job is done (its result links, what it made), kept while
    # the result is fetched: a download that fails is tried again from it, and a later status
    # answer that goes back on it ("processing" again) cannot lose the finished video.
    Column("job_done", JSON),
)
Index("ix_tasks_owner_created", tasks.c.owner_id, tasks.c.created_at)
# A key's tasks in flight, counted when it creates one.
Index("ix_tasks_owner_status", tasks.c.owner_id, tasks.c.status)
Index("ix_tasks_status_check", tasks.c.status, tasks.c.next_check_at)
Index("ix_tasks_provider_submit", tasks.c.provider, tasks.c.submit_state)
# A task by its upstream job: an account's callback, and a job id the upstream gives twice.
Index("ix_tasks_upstream", tasks.c.provider, tasks.c.upstream_id)
# The retention sweep's question: files not yet removed, expired soonest first.
Index("ix_tasks_expiry", tasks.c.files_removed_at, tasks.c.expires_at)

uploads = Table(
    "uploads",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("owner_id", String(40), nullable=False, index=True),
    Column("path", String(300), nullable=False),
    Column("mime", String(100), nullable=False),
    Column("bytes", Integer, nullable=False),
    Column("width", Integer),
    Column("height", Integer),
    Column("purpose", String(40), nullable=False),
    Column("created_at", Float, nullable=False),
)

characters = Table(
    "characters",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("owner_id", String(40), nullable=False, index=True),
    Column("name", String(200), nullable=False),
    Column("username", String(100), nullable=False, unique=True),
    Column("upload_id", String(40)),
    Column("created_at", Float, nullable=False),
)

webhook_endpoints = Table(
    "webhook_endpoints",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("url", Text, nullable=False),
    # The signing secret must be usable to sign: stored as is, or encrypted with the secret
    # key (store.cipher), which needs more room. APIs show it whole only once.
    Column("secret", Text, nullable=False),
    Column("events", JSON, nullable=False),
    Column("enabled", Boolean, nullable=False, server_default="1"),
    Column("created_at", Float, nullable=False),
)

# One row per outgoing call (a task's own callback URL or an admin webhook endpoint).
deliveries = Table(
    "deliveries",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("task_id", String(40), nullable=False, index=True),
    Column("endpoint_id", String(40)),
    Column("url", Text, nullable=False),
    Column("event", String(40), nullable=False),
    Column("payload", JSON, nullable=False),
    Column("status", String(20), nullable=False),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("next_attempt_at", Float, nullable=False),
    Column("last_status_code", Integer),
    Column("last_error", Text),
    Column("created_at", Float, nullable=False),
    Column("delivered_at", Float),
)
Index("ix_deliveries_due", deliveries.c.status, deliveries.c.next_attempt_at)

# One row per upstream account soragate can send work to.
provider_accounts = Table(
    "provider_accounts",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("name", String(100), nullable=False, unique=True),
    Column("kind", String(20), nullable=False),
    Column("base_url", Text, nullable=False),
    # As given, or encrypted with the secret key (store.cipher); so are secret ``options``.
    Column("secret", Text, nullable=False),
    # public model name → upstream model name ("" = same name)
    Column("models", JSON, nullable=False),
    # {"seconds": [...] | null, "sizes": [...] | null, "features": [...]}
    Column("limits", JSON, nullable=False),
    Column("options", JSON, nullable=False),
    Column("priority", Integer, nullable=False, server_default="100"),
    Column("weight", Integer, nullable=False, server_default="1"),
    Column("max_concurrency", Integer, nullable=False, server_default="8"),
    Column("poll_rate", Float, nullable=False, server_default="5"),
    Column("price_per_second", Float, nullable=False, server_default="0"),
    Column("enabled", Boolean, nullable=False, server_default="1"),
    Column("disabled_reason", Text),
    Column("cooldown_until", Float),
    Column("consecutive_failures", Integer, nullable=False, server_default="0"),
    Column("success_count", Integer, nullable=False, server_default="0"),
    Column("failure_count", Integer, nullable=False, server_default="0"),
    Column("last_error", Text),
    # The shared poll-rate limit: the earliest moment the next status request may leave,
    # whichever process sends it.
    Column("poll_next_at", Float, nullable=False, server_default="0"),
    # The task behind the latest failure: one task failing again and again is that task's
    # problem, not the account's, and counts once towards a cooldown.
    Column("last_failed_task", String(40)),
    Column("source", String(20), nullable=False, server_default="api"),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
)

# Public model name → the (account, profile) routes it takes, best first.
model_routes = Table(
    "model_routes",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("public_model", String(100), nullable=False, index=True),
    Column("position", Integer, nullable=False),
    Column("account", String(100), nullable=False),
    Column("profile_id", String(200)),
    Column("policy", String(20), nullable=False, server_default="nearest"),
    Column("created_at", Float, nullable=False),
)

# Model profiles added through the admin API (shipped ones live in the package).
model_profiles = Table(
    "model_profiles",
    metadata,
    Column("id", String(200), primary_key=True),
    Column("data", JSON, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
)

# Worker processes, by heartbeat: the admin console lists the live ones.
workers = Table(
    "workers",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("role", String(20), nullable=False),
    Column("host", String(200), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("started_at", Float, nullable=False),
    Column("heartbeat_at", Float, nullable=False),
    # Steps this worker is running now.
    Column("steps", Integer, nullable=False, server_default="0"),
)

# Where deleted tasks stood in their key's list, for a while: a client paging with a cursor
# on a task it has just deleted (list, delete each, next page) goes on from where it was.
deleted_tasks = Table(
    "deleted_tasks",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("owner_id", String(40), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("deleted_at", Float, nullable=False, index=True),
)

# What deleted tasks counted for in the usage charts, summed per day (of creation), account
# and key: deleting a task does not take back what it cost, so the charts keep it.
deleted_usage = Table(
    "deleted_usage",
    metadata,
    Column("day", String(10), primary_key=True),
    Column("provider", String(100), primary_key=True),
    Column("owner_id", String(40), primary_key=True),
    Column("tasks", Integer, nullable=False),
    Column("completed", Integer, nullable=False),
    Column("failed", Integer, nullable=False),
    Column("seconds", Float, nullable=False),
    Column("credits", Float, nullable=False),
)

# How long upstream jobs take, learned per route (account, model, size, length): the worker
# asks about a job when it is due instead of on a fixed cadence.
job_durations = Table(
    "job_durations",
    metadata,
    Column("route", String(300), primary_key=True),
    # The mean time from submission to the job being seen done, older jobs fading out.
    Column("mean", Float, nullable=False),
    # When the first look is worth it: a low quantile (5 %) of those times; on the routes of
    # lower bounds from running jobs' progress ("~|…"), the lowest bound.
    Column("low", Float, nullable=False),
    Column("samples", Integer, nullable=False),
    Column("updated_at", Float, nullable=False),
    # The times counted in 5 %-wide buckets, fading ({bucket: count}); what ``low`` is
    # read from. None on the routes of bounds.
    Column("buckets", JSON, nullable=True),
)
