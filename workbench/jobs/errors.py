"""Exceptions that end a job, raised inside the job process."""

from __future__ import annotations


class JobCancelled(Exception):
    """The job stopped after a cancel request or SIGTERM; finished work is stored.

    `abandoned` is True when work still running in workers was left behind, so
    the process should exit instead of waiting for it.
    """

    def __init__(self, message: str = "Cancelled.", abandoned: bool = False):
        super().__init__(message)
        self.abandoned = abandoned


class JobFailed(Exception):
    """The job cannot go on. The message states what failed and what to fix."""

    def __init__(self, message: str, abandoned: bool = False):
        super().__init__(message)
        self.abandoned = abandoned
