"""Runtime settings, read once from the environment (``SORAGATE_*``) and passed down."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
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
    port: int = 8000

    sandbox_delay: float = 5.0
    sandbox_fps: int = 24
    sandbox_render_workers: int = 1
    # Regexes; a prompt matching one fails as a content-policy violation, the way a real
    # upstream's moderation would. Images are reviewed by their declared filename.
    sandbox_review_rules: list[str] = Field(default_factory=lambda: list(DEFAULT_REVIEW_RULES))

    allow_private_urls: bool = False
    max_prompt_chars: int = 32_000
    max_upload_bytes: int = 20 * 1024 * 1024

    worker_enabled: bool = True
    worker_concurrency: int = 1000
    # Result checks and thumbnails run in threads, this many at a time.
    media_workers: int = 2
    worker_id: str | None = None
    lease_seconds: float = 30.0
    claim_interval: float = 0.5
    poll_after_ms: int = 2000
    retention_hours: float = 0.0
    # Upstream calls: first retry after about this long, doubling up to a minute.
    retry_base_seconds: float = 1.0
    # A task not finished upstream this long after creation fails with a timeout.
    task_deadline_seconds: float = 1800.0
    providers_file: Path | None = None
    # Extra model profiles (TOML or JSON), on top of the shipped ones.
    profiles_file: Path | None = None
    # How a request snaps to a model profile when a route does not say: nearest | up | refuse.
    snap_policy: str = "nearest"

    callback_retry_delays: list[float] = Field(default_factory=lambda: [5.0, 30.0, 120.0, 600.0, 1800.0])

    log_level: str = "INFO"

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
