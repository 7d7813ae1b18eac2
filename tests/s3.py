"""A local S3-API server (moto's standalone server on a loopback port) for tests and
benchmarks of the object storage backend.

Loaded as a plugin by conftest, so any test can ask for ``s3_server`` (one per session)
and ``s3_bucket`` (a fresh, empty bucket per test). Outside pytest (``bench/``),
``with MotoS3() as s3:`` runs one for the length of the block, and ``s3.env(bucket)`` gives
the ``SORAGATE_*`` variables that point a soragate process at a new bucket on it.
"""

from __future__ import annotations

import itertools
import logging
import socket
from collections.abc import Iterator
from typing import Any

import pytest

_names = itertools.count()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class MotoS3:
    region = "us-east-1"
    access_key_id = "soragate-test"
    secret_access_key = "soragate-test-secret"

    def __init__(self) -> None:
        self.port = _free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._server: Any = None

    def __enter__(self) -> MotoS3:
        from moto.server import ThreadedMotoServer  # imported here: only what uses S3 pays for it

        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request otherwise
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self._server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.stop()

    def client(self) -> Any:
        """A boto3 S3 client: a client nobody here wrote, to look inside the buckets."""
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name=self.region,
            aws_access_key_id=self.access_key_id,
            aws_secret_access_key=self.secret_access_key,
        )

    def create_bucket(self, name: str | None = None) -> str:
        name = name or f"soragate-{next(_names)}"
        self.client().create_bucket(Bucket=name)
        return name

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        return sorted(item["Key"] for page in pages for item in page.get("Contents", []))

    def get(self, bucket: str, key: str) -> bytes:
        data: bytes = self.client().get_object(Bucket=bucket, Key=key)["Body"].read()
        return data

    def settings(self, url: str, **overrides: Any) -> dict[str, Any]:
        """Settings fields that point soragate at ``url`` (``s3://bucket/prefix``) here."""
        return {
            "storage_url": url,
            "s3_endpoint_url": self.endpoint,
            "s3_region": self.region,
            "s3_access_key_id": self.access_key_id,
            "s3_secret_access_key": self.secret_access_key,
            **overrides,
        }

    def env(self, bucket: str, prefix: str = "soragate") -> dict[str, str]:
        """The same as environment variables for a ``soragate`` process, on a new bucket."""
        self.create_bucket(bucket)
        fields = self.settings(f"s3://{bucket}/{prefix}")
        return {f"SORAGATE_{name.upper()}": str(value) for name, value in fields.items()}


@pytest.fixture(scope="session")
def s3_server() -> Iterator[MotoS3]:
    with MotoS3() as server:
        yield server


@pytest.fixture
def s3_bucket(s3_server: MotoS3) -> str:
    return s3_server.create_bucket()
