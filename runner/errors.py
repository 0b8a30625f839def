"""The one exception a step raises for a failure the user can act on; the run finishes it in one place."""

from __future__ import annotations

from enum import StrEnum

from runner.exits import Exit


class Output(StrEnum):
    """What the run did to the day's output in the table, as the step that failed knows it: the last line,
    the manifest and the mail say it from this (outcome.py), never from a message's words."""

    UNCHANGED = "unchanged"  # this run changed nothing (another run's commit may have landed meanwhile)
    PUBLISHED = "published"  # this run's rows are the day's rows
    UNKNOWN = "unknown"  # a commit failed and the table could not be read back: it may have landed


class RunFailed(Exception):
    """A step failed: str(self) says what failed and what to do; exit says which code the run ends with;
    output, what became of the day's output (set where it is raised: the raiser knows)."""

    def __init__(self, exit: Exit, message: str, step: str = "", output: Output = Output.UNCHANGED) -> None:
        super().__init__(message)
        self.exit = exit
        self.step = step
        self.output = output


class Stopped(BaseException):
    """SIGTERM or SIGINT arrived: stop, shut the notebook down, publish nothing."""
