"""Runtime settings, read once from the environment (``SORAGATE_*``) and passed down."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_REVIEW_RULES = [
    r"(?i)\b(nsfw|nude|naked|porn)\b",
    r"(?i)\b(gore|beheading|dismember)\b",
    r"(?i)\bblocked-by-review\b",
]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SORAGATE_", extra="ignore")

    data_dir: Path = Path("./data")
    database_url: str | None = None
    public_url: str | None = None
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)

    # Where result files and uploads live: None keeps them under <data_dir>/files; an
    # ``s3://bucket/prefix`` URL puts them in an S3-compatible bucket that replicas share.
    storage_url: str | None = None
    s3_endpoint_url: str | None = None  # for R2, MinIO, ...; None = AWS
    s3_region: str | None = None
    # Without keys, the usual AWS_* variables or an instance role are used.
    s3_access_key_id: str | None = None
    s3_secret_access_key: SecretStr | None = None
    # Redirect content downloads to presigned bucket URLs instead of streaming them through.
    storage_presign: bool = False

    sandbox_delay: float = Field(default=5.0, ge=0)
    sandbox_fps: int = Field(default=24, ge=1, le=120)
    sandbox_render_workers: int = Field(default=1, ge=0)
    # Regexes; a prompt matching one fails as a content-policy violation, the way a real
    # upstream's moderation would. Images are reviewed by their declared filename.
    sandbox_review_rules: list[str] = Field(default_factory=lambda: list(DEFAULT_REVIEW_RULES))

    allow_private_urls: bool = False
    max_prompt_chars: int = Field(default=32_000, ge=1)
    max_upload_bytes: int = Field(default=20 * 1024 * 1024, ge=1)

    # False: this process serves the API only (``soragate serve --no-worker``).
    worker_enabled: bool = True
    worker_concurrency: int = Field(default=1000, ge=1)
    # Processes that check results and make thumbnails and spritesheets (0: a thread of the
    # worker process itself); results downloaded and stored at once (bounds the scratch disk).
    media_workers: int = Field(default=2, ge=0)
    result_downloads: int = Field(default=32, ge=1)
    worker_id: str | None = None
    # A worker heartbeats every third of this; a task it holds is taken over after it.
    lease_seconds: float = Field(default=30.0, ge=1)
    claim_interval: float = Field(default=0.5, gt=0)
    poll_after_ms: int = Field(default=2000, ge=0)
    retention_hours: float = Field(default=0.0, ge=0)
    # Upstream calls: first retry after about this long, doubling up to a minute.
    retry_base_seconds: float = Field(default=1.0, gt=0)
    # A task not finished upstream this long after creation fails with a timeout.
    task_deadline_seconds: float = Field(default=1800.0, gt=0)
    # One upstream request (create, status) is over in this long, whatever the upstream does;
    # a result download in the second.
    upstream_timeout_seconds: float = Field(default=60.0, gt=0)
    download_timeout_seconds: float = Field(default=600.0, gt=0)
    # A caller's URL (an input image, a character clip) is fetched whole within this long.
    fetch_timeout_seconds: float = Field(default=30.0, gt=0)
    providers_file: Path | None = None
    # Extra model profiles (TOML or JSON), on top of the shipped ones.
    profiles_file: Path | None = None
    # How a request snaps to a model profile when a route does not say: nearest | up | refuse.
    snap_policy: Literal["nearest", "up", "refuse"] = "nearest"

    callback_retry_delays: list[float] = Field(default_factory=lambda: [5.0, 30.0, 120.0, 600.0, 1800.0])

    @field_validator("sandbox_review_rules")
    @classmethod
    def _rules_compile(cls, rules: list[str]) -> list[str]:
        for rule in rules:
            try:
                re.compile(rule)
            except re.error as exc:
                raise ValueError(f"{rule!r} is not a regular expression: {exc}") from None
        return rules

    @field_validator("callback_retry_delays")
    @classmethod
    def _delays_not_negative(cls, delays: list[float]) -> list[float]:
        if any(not 0 <= d < float("inf") for d in delays):
            raise ValueError("each delay must be a number of seconds, 0 or more")
        return delays

    @field_validator("public_url")
    @classmethod
    def _public_url_is_a_url(cls, value: str | None) -> str | None:
        if not value:
            return None
        parts = urlsplit(value.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be the http(s) URL clients reach soragate at, like https://gate.example.com")
        return value.strip()

    # Hex key for signed result links; every process that serves links must share it. Unset:
    # a key made on first start in the data dir (signing.key, mode 0600).
    signing_key: SecretStr | None = None

    @field_validator("signing_key")
    @classmethod
    def _signing_key_is_hex(cls, value: SecretStr | None) -> SecretStr | None:
        # Never echoes the key: a weak or mistyped one would forge or break every link.
        if value is None:
            return None
        text = value.get_secret_value().strip()
        try:
            raw = bytes.fromhex(text)
        except ValueError:
            raise ValueError("must be hex digits (e.g. from `openssl rand -hex 32`)") from None
        if len(raw) < 32:
            raise ValueError(f"must be at least 64 hex digits (32 bytes), not {len(text)}")
        return SecretStr(text)

    # Encrypts provider and webhook secrets in the database (Fernet keys: ``soragate secrets
    # new-key``). Several, comma-separated, rotate: the first encrypts, each decrypts. Unset:
    # read from ``secret_key_file``; neither: secrets are stored as given.
    secret_key: SecretStr | None = None
    secret_key_file: Path | None = None

    # Brakes (see soragate.brakes): defaults for keys without limits of their own (unset:
    # unlimited), requests per minute that create or change something, and tasks in flight.
    key_rate_limit: int | None = Field(default=None, ge=1)
    key_max_in_flight: int | None = Field(default=None, ge=1)
    # Failed sign-ins one client address may make per window before it gets 429 (0: no brake).
    auth_failure_limit: int = Field(default=20, ge=0)
    auth_failure_window: float = Field(default=60.0, gt=0)

    log_level: str = "INFO"
    # text | json (one JSON object a line); third-party libraries (httpx, uvicorn...) log at
    # ``library_log_level`` and above.
    log_format: str = "text"
    library_log_level: str = "WARNING"

    @field_validator("log_level", "library_log_level")
    @classmethod
    def _a_log_level(cls, value: str) -> str:
        level = value.strip().upper()
        if not isinstance(logging.getLevelName(level), int):
            raise ValueError("must be DEBUG, INFO, WARNING, ERROR or CRITICAL")
        return level

    # /metrics: on the main port it needs an admin key or this key (Bearer). With a metrics
    # port it is also served there to anyone who can reach it (bound to ``metrics_host``,
    # default ``host``); ``soragate worker`` has no other way to expose its figures.
    metrics_key: SecretStr | None = None
    metrics_port: int | None = Field(default=None, ge=1, le=65535)
    metrics_host: str | None = None

    @property
    def db_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'soragate.db').resolve()}"

    @property
    def files_dir(self) -> Path:
        return self.data_dir / "files"

    @property
    def base_url(self) -> str:
        return (self.public_url or f"http://{self.host}:{self.port}").rstrip("/")
