"""Claim due tasks → one step each (submit, poll, fetch) → save the outcome."""

from soragate.worker.runner import Worker

__all__ = ["Worker"]
