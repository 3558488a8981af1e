"""Typed messages that workers post to the screens.

Poll results replace an older one of the same type still waiting in the
queue, so a slow screen renders the newest data once instead of every poll.
"""

from __future__ import annotations

from textual.message import Message

from workbench.tui.data.views import ProjectEntry, ProjectView


class ProjectsLoaded(Message):
    """The projects table was read."""

    def __init__(self, entries: list[ProjectEntry]):
        super().__init__()
        self.entries = entries

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, ProjectsLoaded)


class ProjectLoaded(Message):
    """A project's view was read.

    `generation` is the screen's edit counter when the read started; a view
    read before the latest edit is dropped.
    """

    def __init__(self, view: ProjectView, generation: int):
        super().__init__()
        self.view = view
        self.generation = generation

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, ProjectLoaded)


class ProjectGone(Message):
    """The project shown was deleted, e.g. from another terminal."""

    def __init__(self, name: str):
        super().__init__()
        self.name = name


class JobStarted(Message):
    """A job process was launched."""

    def __init__(self, project: str, kind: str, job_id: int):
        super().__init__()
        self.project = project
        self.kind = kind
        self.job_id = job_id


class StoreUnavailable(Message):
    """The store could not be opened (corrupt, written by a newer version, unreadable)."""

    def __init__(self, error: Exception):
        super().__init__()
        self.error = error


class WorkerFailed(Message):
    """A worker raised; the app shows `error` in a dialog."""

    def __init__(self, title: str, error: BaseException):
        super().__init__()
        self.title = title
        self.error = error
