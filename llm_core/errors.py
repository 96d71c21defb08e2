"""Exceptions raised by llm_core.

Every error a user can cause (bad config, malformed data, a corrupt checkpoint) is one of these, with a
one-line message naming the file, field and value, so the CLI and the TUI can show it without a trace.
"""
from __future__ import annotations


class WorkbenchError(ValueError):
    """Base class: a user-facing error with a one-line message. `exit_code` is the CLI's status for it."""

    exit_code = 2


class ConfigError(WorkbenchError):
    """An invalid or unknown configuration key or value. `field` names the offending field when there is
    one, so a form can show the message next to it without parsing the text."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class DataError(WorkbenchError):
    """A malformed dataset file or record."""


class CheckpointError(WorkbenchError):
    """A checkpoint that is missing, corrupt, or does not match the model."""


class GenerationError(WorkbenchError):
    """Invalid generation arguments (empty prompt, prompt too long, bad sampling values)."""


class DiskFullError(WorkbenchError):
    """The disk filled up (ENOSPC) while a run wrote a checkpoint or its metrics: not the user's config,
    so the CLI exits 1 (like any failed command) rather than 2 (a usage error)."""

    exit_code = 1
