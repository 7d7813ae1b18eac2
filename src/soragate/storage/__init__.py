"""Result and upload files: on local disk by default, or in an S3-compatible bucket that
several replicas share (``SORAGATE_STORAGE_URL``). Signed links live in ``signing``."""

from __future__ import annotations

from soragate.settings import Settings
from soragate.storage.base import Storage, StorageError
from soragate.storage.local import LocalStorage
from soragate.storage.s3 import S3Storage

__all__ = ["LocalStorage", "S3Storage", "Storage", "StorageError", "storage_from_settings"]


def storage_from_settings(settings: Settings) -> Storage:
    if settings.storage_url is None:
        return LocalStorage(settings.files_dir)
    secret = settings.s3_secret_access_key
    return S3Storage.connect(
        settings.storage_url,
        scratch_root=settings.data_dir / "scratch",
        endpoint_url=settings.s3_endpoint_url,
        region=settings.s3_region,
        access_key_id=settings.s3_access_key_id,
        secret_access_key=secret.get_secret_value() if secret is not None else None,
        presign=settings.storage_presign,
    )
