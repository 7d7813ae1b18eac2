"""How one upstream model words its job states and where it puts its result, as a test
gives it to a fake: a new model on an existing upstream, taught to the fake as data."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ModelDialect:
    # The fake's own job state (queued, running, succeeded, failed) → this model's word.
    words: dict[str, str]
    # The result link → the status-body fields that carry it (replacing the upstream's usual ones).
    result: Callable[[str], dict[str, Any]]

    def word(self, state: str) -> str:
        return self.words.get(state, state)
