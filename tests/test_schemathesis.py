"""Schemathesis against the app's own OpenAPI schema on a live server, with a user key and
with an admin key: every operation, bounded, and not one server error (5xx). A stateful run
then follows the schema's links (create a video, then read, remix and delete it).

The server runs on Postgres when SORAGATE_TEST_POSTGRES_URL is set (the stricter backend:
it refuses NUL and oversized values that SQLite stores), else on SQLite."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from tests.cluster import reset_postgres
from tests.conftest import LiveServer, free_port, run_server, test_settings

EXAMPLES = 10  # per operation and key: the file stays within a couple of minutes
STATEFUL = settings(max_examples=15, stateful_step_count=4, deadline=None, database=None)
PG_URL = os.environ.get("SORAGATE_TEST_POSTGRES_URL")


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    data = tmp_path_factory.mktemp("schemathesis") / "data"
    backend: dict[str, Any] = {}
    if PG_URL:
        reset_postgres(PG_URL)
        backend["database_url"] = PG_URL
    # Content review refuses every prompt: a task ends at once without rendering, so the
    # requests that wait for a result (OpenAI images, chat, Sora2API) answer quickly.
    yield from run_server(
        test_settings(data, port=free_port(), sandbox_delay=0.1, sandbox_review_rules=["(?s).*"], **backend)
    )


def _schema(live: LiveServer, key: str) -> Any:
    schema = schemathesis.openapi.from_url(f"{live.url}/openapi.json")
    schema.config.update(base_url=live.url, headers={"Authorization": f"Bearer {key}"}, request_timeout=30)
    return schema


@pytest.fixture(scope="module")
def user_schema(live: LiveServer) -> Any:
    return _schema(live, live.create_key("schemathesis-user"))


@pytest.fixture(scope="module")
def admin_schema(live: LiveServer) -> Any:
    return _schema(live, live.admin_key)


def _server_errors(schema: Any) -> list[str]:
    """Run every operation of ``schema``; what failed, with a curl line to repeat it."""
    failed = []
    for result in schema.get_all_operations():
        operation = result.ok()

        @settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy())
        def run(case: Any) -> None:
            case.call_and_validate(checks=[not_a_server_error])

        try:
            run()
        except Exception as exc:  # noqa: BLE001 - collected, to report every operation at once
            failed.append(f"{operation.label}: {exc}")
    return failed


def test_no_server_errors_with_a_user_key(user_schema: Any) -> None:
    assert _server_errors(user_schema) == []


def test_no_server_errors_with_an_admin_key(admin_schema: Any) -> None:
    assert _server_errors(admin_schema) == []


def test_no_server_errors_following_links(user_schema: Any) -> None:
    class Machine(user_schema.as_state_machine()):  # type: ignore[misc]
        def validate_response(self, response: Any, case: Any, *args: Any, **kwargs: Any) -> None:
            case.validate_response(response, checks=[not_a_server_error])

    Machine.run(settings=STATEFUL)
