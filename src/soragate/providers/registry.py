from __future__ import annotations

from soragate.core.task import Task
from soragate.providers.base import Provider


class ProviderRegistry:
    """Which provider serves a task. Today every task goes to the default provider (the
    sandbox); routing among upstream accounts plugs in here."""

    def __init__(self, providers: dict[str, Provider], *, default: str) -> None:
        self._providers = providers
        self._default = default

    def get(self, name: str) -> Provider | None:
        return self._providers.get(name)

    def for_task(self, task: Task) -> Provider:
        if task.provider and task.provider in self._providers:
            return self._providers[task.provider]
        return self._providers[self._default]

    def all(self) -> list[Provider]:
        return list(self._providers.values())

    async def aclose(self) -> None:
        for provider in self._providers.values():
            await provider.aclose()
