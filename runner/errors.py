"""The one exception a step raises for a failure the user can act on; the run finishes it in one place."""

from __future__ import annotations

from runner.exits import Exit

# What became of the day's output, which the run's last line and mail say: a failure published nothing
# (NOTHING, the default), its message says itself what became of the table (SAID: the table's own failures,
# which may be "unknown" or "another run's"), or the day was published before the run failed (PUBLISHED).
NOTHING, SAID, PUBLISHED = "nothing", "said", "published"


class RunFailed(Exception):
    """A step failed: str(self) says what failed and what to do; exit says which code the run ends with;
    output, what became of the day's output."""

    def __init__(self, exit: Exit, message: str, step: str = "", output: str = NOTHING) -> None:
        super().__init__(message)
        self.exit = exit
        self.step = step
        self.output = output


class Stopped(BaseException):
    """SIGTERM or SIGINT arrived: stop, shut the notebook down, publish nothing."""
