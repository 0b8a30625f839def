"""The runner's exit codes: the one table the manifest, the mails, the README and RunMailer are held to."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Exit:
    code: int
    meaning: str  # a few words: the manifest's "meaning" and the mail's first sentence
    advice: str  # what it means for the output and what to do: the failed-run mail (RunMailer) adds it

    @property
    def mail(self) -> str:
        """The sentence RunMailer (template/pipeline.yaml) mails for this code."""
        return f"{self.meaning}: {self.advice}"


OK = Exit(0, "success", "the checked output was published")
INTERNAL = Exit(1, "internal runner error", "its last log line says why; nothing was published")
CONFIG = Exit(
    2,
    "bad configuration or input",
    "a variable, the notebook, the settings or the data location; nothing was published",
)
NOTEBOOK = Exit(10, "the notebook failed", "the report shows the failing cell; nothing was published")
TIMEOUT = Exit(11, "a cell timed out", "raise CELL_TIMEOUT or make the cell faster; nothing was published")
CHECK = Exit(20, "the check failed", "its verdict is in check.txt; nothing was published")
PUBLISH = Exit(
    30, "publishing failed", "its last line says whether the output of that day is unchanged; rerun the day"
)
STOPPED = Exit(143, "stopped by SIGTERM", "StopTask, or the end of its time, came before it finished")

EXITS = {e.code: e for e in (OK, INTERNAL, CONFIG, NOTEBOOK, TIMEOUT, CHECK, PUBLISH, STOPPED)}

# Not the runner's own: what ECS reports when the container was killed (out of memory, or a stop that
# outlived StopTimeout). RunMailer names it too.
KILLED = Exit(137, "killed (SIGKILL)", "out of memory (raise TaskMemory), or StopTimeout ran out")
