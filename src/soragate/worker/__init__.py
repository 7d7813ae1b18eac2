"""Claim → submit → poll → store results → finish."""

from soragate.worker.events import TaskEvents
from soragate.worker.runner import Worker

__all__ = ["TaskEvents", "Worker"]
