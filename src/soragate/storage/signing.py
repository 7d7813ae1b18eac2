"""Signed, expiring links to result files, for clients that download without a key
(relay and Kie clients fetch ``video_url`` with a plain GET)."""

from __future__ import annotations

import hashlib
import hmac
import time


class UrlSigner:
    def __init__(self, secret: bytes, *, base_url: str, ttl: float = 7 * 24 * 3600) -> None:
        self._secret = secret
        self.base_url = base_url.rstrip("/")
        self.ttl = ttl

    def _mac(self, task_id: str, variant: str, expires: int) -> str:
        message = f"{task_id}:{variant}:{expires}".encode()
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()[:32]

    def url(self, task_id: str, variant: str, *, now: float | None = None) -> str:
        expires = int((now or time.time()) + self.ttl)
        signature = self._mac(task_id, variant, expires)
        return f"{self.base_url}/files/{task_id}/{variant}?exp={expires}&sig={signature}"

    def upload_url(self, upload_id: str, *, now: float | None = None) -> str:
        """A link to an uploaded input, for upstreams that fetch reference images by URL."""
        expires = int((now or time.time()) + self.ttl)
        signature = self._mac(upload_id, "upload", expires)
        return f"{self.base_url}/files/uploads/{upload_id}?exp={expires}&sig={signature}"

    def notify_url(self, task_id: str) -> str:
        """Where an upstream may call back about the task's job (a relay's ``notify_hook``):
        valid as long as the task, so it has no expiry."""
        return f"{self.base_url}/callbacks/relay/{task_id}?sig={self._mac(task_id, 'notify', 0)}"

    def verify_notify(self, task_id: str, signature: str) -> bool:
        return signature.isascii() and hmac.compare_digest(self._mac(task_id, "notify", 0), signature)

    def verify(self, task_id: str, variant: str, expires: int, signature: str) -> bool:
        # compare_digest takes str only when it is ASCII; no real signature is anything else.
        if expires < time.time() or not signature.isascii():
            return False
        return hmac.compare_digest(self._mac(task_id, variant, expires), signature)
