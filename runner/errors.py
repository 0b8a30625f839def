"""The one exception a step raises for a failure the user can act on; the run finishes it in one place."""

from __future__ import annotations

from runner.exits import Exit


class RunFailed(Exception):
    """A step failed: str(self) says what failed and what to do; exit says which code the run ends with."""

    def __init__(self, exit: Exit, message: str, step: str = "") -> None:
        super().__init__(message)
        self.exit = exit
        self.step = step


class Stopped(BaseException):
    """SIGTERM or SIGINT arrived: stop, shut the notebook down, publish nothing."""
